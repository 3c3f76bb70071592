-- Agencies that push custody feeds, their API keys, the raw feeds they sent and the custody state derived from them.
CREATE TABLE agencies (
    agency_id                      text PRIMARY KEY,
    name                           text        NOT NULL,
    timezone                       text        NOT NULL,
    contact_phone                  text,
    victim_services_phone          text,
    victim_services_url            text,
    expected_feed_interval_minutes integer     NOT NULL DEFAULT 60,
    notices_paused                 boolean     NOT NULL DEFAULT false,
    active                         boolean     NOT NULL DEFAULT true,
    status_map                     jsonb       NOT NULL,
    csv_columns                    jsonb       NOT NULL,
    created_at                     timestamptz NOT NULL DEFAULT now(),
    updated_at                     timestamptz NOT NULL DEFAULT now(),
    last_feed_at                   timestamptz,
    feed_stale                     boolean     NOT NULL DEFAULT false
);

-- Only the SHA-256 of each key is kept; key_id is the visible prefix used to find it.
CREATE TABLE api_keys (
    key_id     text PRIMARY KEY,
    agency_id  text        NOT NULL REFERENCES agencies (agency_id),
    key_hash   text        NOT NULL,
    label      text,
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz
);
CREATE INDEX api_keys_agency ON api_keys (agency_id);

-- Every batch or file exactly as received, stored (and committed) before it is processed.
CREATE TABLE feed_batches (
    batch_id         uuid PRIMARY KEY,
    agency_id        text        NOT NULL REFERENCES agencies (agency_id),
    kind             text        NOT NULL CHECK (kind IN ('json', 'csv')),
    idempotency_key  text,
    body_sha256      text,
    body             bytea,
    size_bytes       bigint      NOT NULL DEFAULT 0,
    status           text        NOT NULL,
    received_at      timestamptz NOT NULL DEFAULT now(),
    processed_at     timestamptz,
    rows_processed   integer     NOT NULL DEFAULT 0,
    rows_accepted    integer     NOT NULL DEFAULT 0,
    rows_rejected    integer     NOT NULL DEFAULT 0,
    error            text,
    result           jsonb,
    UNIQUE (agency_id, idempotency_key)
);
CREATE INDEX feed_batches_unprocessed ON feed_batches (received_at) WHERE status IN ('received', 'pending', 'processing');

-- A CSV upload, streamed in chunks so no file is ever held whole in memory.
CREATE TABLE feed_file_chunks (
    batch_id uuid    NOT NULL REFERENCES feed_batches (batch_id),
    chunk_no integer NOT NULL,
    data     bytea   NOT NULL,
    PRIMARY KEY (batch_id, chunk_no)
);

CREATE TABLE feed_row_errors (
    batch_id   uuid    NOT NULL REFERENCES feed_batches (batch_id),
    row_number integer NOT NULL,
    record_id  text,
    reason     text    NOT NULL,
    PRIMARY KEY (batch_id, row_number)
);

CREATE TABLE subjects (
    subject_id           uuid PRIMARY KEY,
    agency_id            text        NOT NULL REFERENCES agencies (agency_id),
    display_name         text,
    facility             text,
    status               text,
    release_reason       text,
    transfer_destination text,
    court_date           timestamptz,
    effective_at         timestamptz,
    sequence             bigint,
    in_custody           boolean     NOT NULL DEFAULT false,
    last_record_id       text,
    sealed_at            timestamptz,
    updated_at           timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX subjects_in_custody ON subjects (agency_id) WHERE in_custody AND sealed_at IS NULL;

-- Any one identifier finds the subject; an identifier belongs to one subject of its agency.
CREATE TABLE subject_identifiers (
    agency_id  text NOT NULL,
    kind       text NOT NULL,
    normalised text NOT NULL,
    value      text NOT NULL,
    subject_id uuid NOT NULL REFERENCES subjects (subject_id),
    PRIMARY KEY (agency_id, kind, normalised)
);
CREATE INDEX subject_identifiers_subject ON subject_identifiers (subject_id);

-- Every record applied (accepted, duplicate, stale or sealed); the agency's record id is unique per agency.
CREATE TABLE custody_records (
    agency_id     text        NOT NULL,
    record_id     text        NOT NULL,
    batch_id      uuid        NOT NULL,
    subject_id    uuid        NOT NULL,
    status_code   text        NOT NULL,
    status        text        NOT NULL,
    effective_at  timestamptz NOT NULL,
    sequence      bigint,
    result        text        NOT NULL,
    event_id      text,
    received_at   timestamptz NOT NULL,
    PRIMARY KEY (agency_id, record_id)
);

-- Per agency and hour, how many records ended with each result: cheap 24 h and all-time totals.
CREATE TABLE feed_counts (
    agency_id text        NOT NULL,
    hour      timestamptz NOT NULL,
    result    text        NOT NULL,
    count     bigint      NOT NULL,
    PRIMARY KEY (agency_id, hour, result)
);
