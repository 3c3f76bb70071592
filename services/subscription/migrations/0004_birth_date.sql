-- A person's date of birth, where the agency shares it: a victim without a number may search by last name and
-- date of birth instead of a first name. Never shown.
ALTER TABLE custody_subjects ADD COLUMN birth_date date;
