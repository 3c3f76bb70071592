-- Search by name, for agencies that allow it: the name the feed gives, and its words folded for matching.
ALTER TABLE agencies ADD COLUMN public_name_search boolean NOT NULL DEFAULT false;
ALTER TABLE custody_subjects ADD COLUMN display_name text;
ALTER TABLE custody_subjects ADD COLUMN name_words text[] NOT NULL DEFAULT '{}';
CREATE INDEX custody_subjects_by_name_words ON custody_subjects USING gin (name_words);
