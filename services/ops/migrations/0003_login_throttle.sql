-- Failed logins per (client address, username) since its last success. Each failure beyond the free ones doubles
-- the wait before that pair's next try (up to a cap); a username alone is never blocked, so no one can lock an
-- operator out from another address. The claim of a try is one atomic statement (parallel guesses get no extra).
CREATE TABLE login_throttle (
    client          text        NOT NULL,
    username        text        NOT NULL,
    failures        integer     NOT NULL,
    next_allowed_at timestamptz NOT NULL,
    PRIMARY KEY (client, username)
);

-- The global cap counts every failed login of the window.
CREATE INDEX login_attempts_failed_at ON login_attempts (at) WHERE NOT succeeded;
