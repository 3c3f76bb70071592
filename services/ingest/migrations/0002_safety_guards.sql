-- Safety guards: storm holds, operator overrides and feed-silence notices.

-- Per-agency thresholds. A storm is more urgent changes within the window than the largest of: min changes, the
-- share of the in-custody population, and the multiple of the agency's usual count per window (last 7 days).
ALTER TABLE agencies
    ADD COLUMN storm_window_minutes         integer          NOT NULL DEFAULT 10,
    ADD COLUMN storm_population_share       double precision NOT NULL DEFAULT 0.1,
    ADD COLUMN storm_min_changes            integer          NOT NULL DEFAULT 50,
    ADD COLUMN storm_rate_multiple          double precision NOT NULL DEFAULT 10,
    -- NULL: victims are not told of feed silence; else after how many minutes of silence they are.
    ADD COLUMN silence_notice_after_minutes integer,
    -- The silence victims were last told about (its last_feed_at): told once per outage.
    ADD COLUMN silence_notified_for         timestamptz;

-- Recent urgent changes per agency, for the storm check.
CREATE INDEX custody_records_recent_changes ON custody_records (agency_id, received_at) WHERE event_id IS NOT NULL;

-- A storm hold: while one is open for an agency, none of its custody events is published.
CREATE TABLE storm_holds (
    hold_id         uuid PRIMARY KEY,
    agency_id       text        NOT NULL REFERENCES agencies (agency_id),
    state           text        NOT NULL CHECK (state IN ('holding', 'released', 'discarded')),
    opened_at       timestamptz NOT NULL,
    trigger         text        NOT NULL,
    decided_at      timestamptz,
    decided_by      text,
    decision_reason text
);
CREATE UNIQUE INDEX storm_holds_one_open_per_agency ON storm_holds (agency_id) WHERE state = 'holding';

-- The held events, encoded exactly as they will be published, in feed order.
CREATE TABLE held_events (
    seq        bigserial PRIMARY KEY,
    hold_id    uuid    NOT NULL REFERENCES storm_holds (hold_id),
    event_id   text    NOT NULL UNIQUE,
    subject_id uuid    NOT NULL,
    topic      text    NOT NULL,
    key        text    NOT NULL,
    value      bytea   NOT NULL,
    status     text    NOT NULL,
    urgent     boolean NOT NULL,
    sample     jsonb   NOT NULL
);
CREATE INDEX held_events_by_hold ON held_events (hold_id, seq);

-- Each subject's state before its first held change (NULL: the hold created it), restored on discard.
CREATE TABLE held_subjects (
    hold_id    uuid NOT NULL REFERENCES storm_holds (hold_id),
    subject_id uuid NOT NULL,
    before     jsonb,
    PRIMARY KEY (hold_id, subject_id)
);

-- Set by an operator override; a later feed record with the same status agrees with it and notifies nobody.
ALTER TABLE subjects ADD COLUMN overridden boolean NOT NULL DEFAULT false;

CREATE TABLE overrides (
    override_id  uuid PRIMARY KEY,
    agency_id    text        NOT NULL REFERENCES agencies (agency_id),
    subject_id   uuid        NOT NULL,
    result       text        NOT NULL,
    event_id     text,
    status       text        NOT NULL,
    effective_at timestamptz NOT NULL,
    operator     text        NOT NULL,
    reason       text        NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX overrides_by_agency ON overrides (agency_id, created_at DESC);
