-- Voice calls are a channel like SMS and email: a contact point of its own, with the hash of the PIN that confirms
-- an urgent call (set for voice only).
ALTER TABLE contact_points DROP CONSTRAINT contact_points_channel_check;
ALTER TABLE contact_points ADD CONSTRAINT contact_points_channel_check CHECK (channel IN ('sms', 'email', 'voice'));
ALTER TABLE contact_points ADD COLUMN pin_hash text;
ALTER TABLE contact_points ADD CONSTRAINT contact_points_pin_only_for_voice CHECK (pin_hash IS NULL OR channel = 'voice');
