-- When the dispatcher should next look at a notice: its next attempt, or, while an attempt is in flight, the end of
-- that attempt's lease (a crashed sender). Generated, so no code path can forget to keep it in step; its partial
-- index makes claiming the oldest due notices an index range scan instead of a sort of every due row.
ALTER TABLE notifications ADD COLUMN due_at timestamptz GENERATED ALWAYS AS (
    CASE WHEN in_flight_attempt_id IS NULL THEN next_attempt_at ELSE lease_until END
) STORED;
CREATE INDEX notifications_due_at ON notifications (due_at) WHERE due_at IS NOT NULL;
DROP INDEX notifications_due;
DROP INDEX notifications_in_flight;

-- Notices waiting to retry a temporary failure (the retry gauge): few, so counting them reads only this index.
CREATE INDEX notifications_retrying ON notifications (notification_id) WHERE outcome IS NULL AND failure_count > 0;
