-- Matching's own view of the world, built from events, so it matches while the other services are down.

-- The latest state of every subscription (from subscription.state.v1), found by its case identifier.
CREATE TABLE subscriptions (
    subscription_id  text        PRIMARY KEY,
    agency_id        text        NOT NULL,
    identifier_kind  text        NOT NULL,
    identifier_value text        NOT NULL,  -- normalise_identifier() of what the victim typed
    status           text        NOT NULL,
    version          integer     NOT NULL,
    state            jsonb       NOT NULL,  -- the whole SubscriptionState (contacts only as ciphertext)
    updated_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX subscriptions_by_case ON subscriptions (agency_id, identifier_kind, identifier_value)
    WHERE status = 'active';

-- The latest known custody state of each subject; emptied when the agency seals the subject.
CREATE TABLE custody_subjects (
    agency_id        text        NOT NULL,
    subject_id       text        NOT NULL,
    custody_event_id text,
    effective_at     timestamptz,
    change           jsonb,                 -- the CustodyStatusChanged that set the state
    sealed_at        timestamptz,
    updated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (agency_id, subject_id)
);

-- Every identifier an agency ever sent for a subject (booking, person and case numbers), normalised.
CREATE TABLE subject_identifiers (
    agency_id        text NOT NULL,
    identifier_kind  text NOT NULL,
    identifier_value text NOT NULL,
    subject_id       text NOT NULL,
    PRIMARY KEY (agency_id, identifier_kind, identifier_value, subject_id),
    FOREIGN KEY (agency_id, subject_id) REFERENCES custody_subjects (agency_id, subject_id) ON DELETE CASCADE
);
CREATE INDEX subject_identifiers_by_subject ON subject_identifiers (agency_id, subject_id);

-- Each consumed event, applied once, with the Kafka position it was first read at: a replay of that very
-- message (its transaction aborted) re-sends what it caused; a copy at another position is a duplicate.
CREATE TABLE handled_events (
    event_id         text        PRIMARY KEY,
    source_topic     text        NOT NULL,
    source_partition integer     NOT NULL,
    source_offset    bigint      NOT NULL,
    handled_at       timestamptz NOT NULL DEFAULT now()
);

-- Every notification request decided, with its exact encoded event, so a replay sends the same bytes.
CREATE TABLE notification_requests (
    notification_id  text        PRIMARY KEY,
    cause_event_id   text        NOT NULL,
    subscription_id  text        NOT NULL,
    channel          text        NOT NULL,
    custody_event_id text        NOT NULL,
    kind             text        NOT NULL,
    urgency          text        NOT NULL,
    value            bytea       NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    -- One notice per contact point about one custody change, whether as a change or as the current status.
    UNIQUE (subscription_id, channel, custody_event_id)
);
CREATE INDEX notification_requests_by_cause ON notification_requests (cause_event_id);
