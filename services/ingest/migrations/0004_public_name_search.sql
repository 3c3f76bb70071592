-- An agency may let victims without a number search the people it holds by name (off unless it says so).
ALTER TABLE agencies ADD COLUMN public_name_search boolean NOT NULL DEFAULT false;
