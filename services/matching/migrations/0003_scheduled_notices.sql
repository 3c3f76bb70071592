-- Agencies' profiles (name, reminder policy), as ingest publishes them on agency.profile.
CREATE TABLE agency_profiles (
    agency_id  text        PRIMARY KEY,
    profile    jsonb       NOT NULL,
    updated_at timestamptz NOT NULL
);

-- Reminders of a scheduled release or court date, one per subscription, case date and time (schedule.Reminder).
-- Stored, so that a restart loses none; the id is deterministic, so a re-planned one is the same row.
CREATE TABLE scheduled_notices (
    reminder_id     text        PRIMARY KEY,
    subscription_id text        NOT NULL,
    agency_id       text        NOT NULL,
    subject_id      text        NOT NULL,
    kind            text        NOT NULL,
    scheduled_for   timestamptz NOT NULL,  -- the release or court date it reminds of
    due_at          timestamptz NOT NULL,
    state           text        NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'sent', 'cancelled')),
    decided_at      timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX scheduled_notices_due ON scheduled_notices (due_at) WHERE state = 'pending';
CREATE INDEX scheduled_notices_by_subject ON scheduled_notices (agency_id, subject_id) WHERE state = 'pending';
CREATE INDEX scheduled_notices_by_subscription ON scheduled_notices (subscription_id) WHERE state = 'pending';
