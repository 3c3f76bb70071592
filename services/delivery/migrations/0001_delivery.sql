-- Agencies as the notices need them (from the compacted agency.profile.v1 topic).
CREATE TABLE agencies (
    agency_id      text        PRIMARY KEY,
    profile        jsonb       NOT NULL,
    notices_paused boolean     NOT NULL DEFAULT false,
    updated_at     timestamptz NOT NULL
);

-- One row per notification id: inserting it is the exactly-once gate for a redelivered request.
CREATE TABLE notifications (
    notification_id      text        PRIMARY KEY,
    event_id             text        NOT NULL,
    trace_id             text        NOT NULL,
    kind                 text        NOT NULL,
    subscription_id      text        NOT NULL,
    agency_id            text        NOT NULL,
    channel              text        NOT NULL,
    urgency              text        NOT NULL,
    language             text        NOT NULL,
    contact_masked       text        NOT NULL,
    contact_index        text        NOT NULL DEFAULT '',   -- blind index of the contact ('' when undecryptable)
    case_kind            text,
    case_value           text,
    custody_event_id     text,
    feed_received_at     timestamptz,
    request              jsonb       NOT NULL,               -- the request payload: contact only as ciphertext
    status               text        NOT NULL DEFAULT 'created',
    outcome              text,                               -- NULL while open; delivered, sent, failed, acknowledged, stopped
    next_attempt_at      timestamptz,                        -- when the dispatcher makes the next attempt
    in_flight_attempt_id text,                               -- recorded and committed before the provider call
    lease_until          timestamptz,                        -- after this an in-flight attempt is taken over
    attempt_count        integer     NOT NULL DEFAULT 0,
    failure_count        integer     NOT NULL DEFAULT 0,     -- temporary failures in a row
    first_attempt_at     timestamptz,
    repeat_until         timestamptz,
    acknowledged_at      timestamptz,
    parked_reason        text,
    dead_lettered_at     timestamptz,
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX notifications_due ON notifications (next_attempt_at) WHERE next_attempt_at IS NOT NULL;
CREATE INDEX notifications_in_flight ON notifications (lease_until) WHERE in_flight_attempt_id IS NOT NULL;
CREATE INDEX notifications_to_dead_letter ON notifications (created_at)
    WHERE outcome = 'failed' AND dead_lettered_at IS NULL;
CREATE INDEX notifications_by_subscription ON notifications (subscription_id, created_at);
CREATE INDEX notifications_by_agency ON notifications (agency_id, created_at);
CREATE INDEX notifications_by_case ON notifications (case_value, created_at);
CREATE INDEX notifications_by_time ON notifications (created_at);

-- Every attempt: the attempt id is the provider reference and idempotency key.
CREATE TABLE attempts (
    attempt_id          text        PRIMARY KEY,
    notification_id     text        NOT NULL REFERENCES notifications (notification_id),
    number              integer     NOT NULL,
    purpose             text        NOT NULL,                -- first, retry, repeat
    channel             text        NOT NULL,
    contact_masked      text        NOT NULL,
    provider            text,
    provider_message_id text,
    status              text        NOT NULL,
    error_code          text,
    detail              text,
    created_at          timestamptz NOT NULL,
    handed_off_at       timestamptz,
    completed_at        timestamptz,
    last_checked_at     timestamptz,
    updated_at          timestamptz NOT NULL,
    UNIQUE (notification_id, number)
);
CREATE INDEX attempts_by_provider_message ON attempts (provider_message_id);
CREATE INDEX attempts_awaiting_receipt ON attempts (handed_off_at) WHERE status IN ('sending', 'sent') AND channel = 'sms';

-- Contact points a provider told us never to use again (opted out, hard bounce).
CREATE TABLE disabled_contacts (
    subscription_id text        NOT NULL,
    channel         text        NOT NULL,
    contact_index   text        NOT NULL,
    reason          text        NOT NULL,
    disabled_at     timestamptz NOT NULL,
    PRIMARY KEY (subscription_id, channel, contact_index)
);
