-- The position of each subject's newest applied change, so a late, older one is recorded but notifies nobody
-- (domain.change_position: effective time, the agency's sequence, when ingest received it, the event id).
ALTER TABLE custody_subjects ADD COLUMN sequence bigint, ADD COLUMN received_at timestamptz;
UPDATE custody_subjects SET sequence = (change ->> 'sequence')::bigint,
                            received_at = (change ->> 'received_at')::timestamptz
 WHERE change IS NOT NULL;

-- Each custody change that arrived after a newer one had been applied (a retry, a replay, an agency resend).
CREATE TABLE stale_custody_changes (
    custody_event_id text        PRIMARY KEY,
    agency_id        text        NOT NULL,
    subject_id       text        NOT NULL,
    effective_at     timestamptz NOT NULL,
    newest_event_id  text        NOT NULL,  -- the change it lost to
    recorded_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX stale_custody_changes_by_time ON stale_custody_changes (recorded_at);
