-- Agencies known from agency.profile.v1: subscriptions are accepted only for known, active agencies.
CREATE TABLE agencies (
    agency_id  text PRIMARY KEY,
    name       text        NOT NULL,
    timezone   text        NOT NULL,
    active     boolean     NOT NULL,
    updated_at timestamptz NOT NULL
);

CREATE TABLE subscriptions (
    subscription_id   text PRIMARY KEY,
    agency_id         text        NOT NULL,
    identifier_kind   text        NOT NULL,
    identifier_value  text        NOT NULL,
    status            text        NOT NULL CHECK (status IN ('pending', 'active', 'cancelled')),
    language          text        NOT NULL,
    timezone          text        NOT NULL,
    event_types       text[]      NOT NULL,
    quiet_hours_start time        NOT NULL,
    quiet_hours_end   time        NOT NULL,
    manage_nonce      text        NOT NULL,
    version           integer     NOT NULL CHECK (version >= 1),
    created_at        timestamptz NOT NULL,
    updated_at        timestamptz NOT NULL
);

-- Contact points: only ciphertext, a masked form and a keyed hash (blind index) are stored.
CREATE TABLE contact_points (
    subscription_id text    NOT NULL REFERENCES subscriptions ON DELETE CASCADE,
    channel         text    NOT NULL CHECK (channel IN ('sms', 'email')),
    ciphertext      text    NOT NULL,
    masked          text    NOT NULL,
    blind_index     text    NOT NULL,
    verified        boolean NOT NULL DEFAULT false,
    active          boolean NOT NULL DEFAULT true,
    disabled_reason text,
    PRIMARY KEY (subscription_id, channel)
);
CREATE INDEX contact_points_by_blind_index ON contact_points (blind_index, channel);

-- Verification codes, stored as keyed hashes; one row per issued code.
CREATE TABLE verification_codes (
    subscription_id text        NOT NULL REFERENCES subscriptions ON DELETE CASCADE,
    channel         text        NOT NULL,
    issue           integer     NOT NULL,
    code_hash       text        NOT NULL,
    created_at      timestamptz NOT NULL,
    expires_at      timestamptz NOT NULL,
    attempts        integer     NOT NULL DEFAULT 0,
    consumed_at     timestamptz,
    PRIMARY KEY (subscription_id, channel, issue)
);

-- Fixed-window rate-limit counters, shared by every replica. Buckets hold keyed hashes, never addresses.
CREATE TABLE rate_limit_windows (
    bucket       text        NOT NULL,
    window_start timestamptz NOT NULL,
    hits         integer     NOT NULL,
    PRIMARY KEY (bucket, window_start)
);

-- What ingest last said about each subject, for the public status lookup.
CREATE TABLE custody_subjects (
    agency_id    text        NOT NULL,
    subject_id   text        NOT NULL,
    status       text,
    facility     text,
    effective_at timestamptz,
    sealed       boolean     NOT NULL DEFAULT false,
    updated_at   timestamptz NOT NULL,
    PRIMARY KEY (agency_id, subject_id)
);

CREATE TABLE custody_identifiers (
    agency_id        text NOT NULL,
    identifier_kind  text NOT NULL,
    identifier_value text NOT NULL,
    subject_id       text NOT NULL,
    PRIMARY KEY (agency_id, identifier_kind, identifier_value)
);

-- Inbound SMS already handled (Twilio MessageSid), so a replayed webhook has no second effect.
CREATE TABLE inbound_sms (
    message_sid text PRIMARY KEY,
    keyword     text        NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now()
);
