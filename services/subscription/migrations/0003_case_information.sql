-- What victims are told besides a status: the agency's contacts and referrals, the case information of each
-- subject's newest change (verified subscribers only, never for a sealed subject) and every status change accepted.
ALTER TABLE agencies ADD COLUMN resources jsonb NOT NULL DEFAULT '{}';
ALTER TABLE custody_subjects ADD COLUMN case_info jsonb;

CREATE TABLE custody_history (
    custody_event_id text        PRIMARY KEY,
    agency_id        text        NOT NULL,
    subject_id       text        NOT NULL,
    status           text        NOT NULL,
    facility         text,
    effective_at     timestamptz NOT NULL,
    recorded_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX custody_history_by_subject ON custody_history (agency_id, subject_id, effective_at DESC);
