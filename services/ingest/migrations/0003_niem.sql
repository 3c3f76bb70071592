-- NIEM XML exchanges are stored raw, like JSON batches, under their own kind (read again on recovery).
ALTER TABLE feed_batches DROP CONSTRAINT feed_batches_kind_check;
ALTER TABLE feed_batches ADD CONSTRAINT feed_batches_kind_check CHECK (kind IN ('json', 'csv', 'niem'));
