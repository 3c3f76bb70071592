-- Operators who may log in to the dashboard; only the argon2 hash of each password is kept.
CREATE TABLE operators (
    username      text PRIMARY KEY,
    password_hash text        NOT NULL,
    role          text        NOT NULL CHECK (role IN ('viewer', 'admin')),
    created_at    timestamptz NOT NULL DEFAULT now(),
    disabled_at   timestamptz
);

-- A login; the cookie carries only the signed id. Logout or expiry ends it.
CREATE TABLE sessions (
    session_id  text PRIMARY KEY,
    username    text        NOT NULL REFERENCES operators (username),
    csrf_token  text        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    ended_at    timestamptz
);

-- Every login attempt, for rate limiting (failures per user and per client in a window).
CREATE TABLE login_attempts (
    id         bigserial PRIMARY KEY,
    username   text        NOT NULL,
    client     text        NOT NULL,
    succeeded  boolean     NOT NULL,
    at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX login_attempts_username ON login_attempts (username, at);
CREATE INDEX login_attempts_client ON login_attempts (client, at);

-- Who did what and when: every admin action (replays, pauses, operators created) and every login.
CREATE TABLE audit_log (
    id       bigserial PRIMARY KEY,
    at       timestamptz NOT NULL DEFAULT now(),
    username text        NOT NULL,
    action   text        NOT NULL,
    target   text        NOT NULL,
    outcome  text        NOT NULL,
    detail   jsonb       NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_log_at ON audit_log (at DESC);

-- The current state of each notification, as the delivery service last reported it.
CREATE TABLE notifications (
    notification_id  text PRIMARY KEY,
    subscription_id  text        NOT NULL,
    agency_id        text        NOT NULL,
    channel          text        NOT NULL,
    provider         text,
    status           text        NOT NULL,
    error_code       text,
    attempt          integer     NOT NULL,
    kind             text,
    urgency          text,
    contact_masked   text,
    case_kind        text,
    case_value       text,
    custody_event_id text,
    feed_received_at timestamptz,
    first_at         timestamptz NOT NULL,
    last_at          timestamptz NOT NULL
);
CREATE INDEX notifications_subscription ON notifications (subscription_id);
CREATE INDEX notifications_case ON notifications (lower(case_value));
CREATE INDEX notifications_status ON notifications (status);

-- Every status change of every notification: its history, the windowed counts and the latency percentiles.
CREATE TABLE notification_events (
    event_id         text PRIMARY KEY,
    notification_id  text        NOT NULL,
    agency_id        text        NOT NULL,
    channel          text        NOT NULL,
    provider         text,
    status           text        NOT NULL,
    error_code       text,
    attempt          integer     NOT NULL,
    at               timestamptz NOT NULL,
    latency_seconds  double precision,
    received_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX notification_events_notification ON notification_events (notification_id, at);
CREATE INDEX notification_events_at ON notification_events (at);

-- Alerts from every service (ops.alert.v1), newest first on the dashboard.
CREATE TABLE alerts (
    event_id  text PRIMARY KEY,
    source    text        NOT NULL,
    kind      text        NOT NULL,
    agency_id text        NOT NULL,
    message   text        NOT NULL,
    at        timestamptz NOT NULL
);
CREATE INDEX alerts_at ON alerts (at DESC);

-- Each agency's feed health as last fetched from ingest, and the outage ops raised an alert for (once per outage).
CREATE TABLE feeds (
    agency_id                      text PRIMARY KEY,
    name                           text        NOT NULL,
    last_feed_at                   timestamptz,
    records_accepted               bigint      NOT NULL DEFAULT 0,
    records_rejected               bigint      NOT NULL DEFAULT 0,
    in_custody                     bigint      NOT NULL DEFAULT 0,
    expected_feed_interval_minutes integer     NOT NULL,
    notices_paused                 boolean,
    stale                          boolean     NOT NULL DEFAULT false,
    stale_since                    timestamptz,
    checked_at                     timestamptz NOT NULL
);

-- Dead letters already replayed: one replay per (topic, partition, offset).
CREATE TABLE replays (
    topic       text        NOT NULL,
    partition   integer     NOT NULL,
    "offset"    bigint      NOT NULL,
    target      text        NOT NULL,
    username    text        NOT NULL,
    at          timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (topic, partition, "offset")
);
