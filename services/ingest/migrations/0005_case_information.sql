-- What an agency shares with its victims besides a status: contacts and referrals, reminder times, and per
-- subject the case information of its newest record and a transfer to another participating agency.
ALTER TABLE agencies ADD COLUMN resources jsonb NOT NULL DEFAULT '{}';
ALTER TABLE agencies ADD COLUMN reminders jsonb NOT NULL DEFAULT '{}';
ALTER TABLE subjects ADD COLUMN case_info jsonb;
ALTER TABLE subjects ADD COLUMN transferred_to_agency_id text;
