-- Subscriptions that follow a person transferred to another participating agency and booked there (same
-- person/A-number within 30 days): they get that agency's notices from then on.
CREATE TABLE followed_subjects (
    subscription_id text        NOT NULL,
    agency_id       text        NOT NULL,  -- the agency now holding the person
    subject_id      text        NOT NULL,
    from_agency_id  text        NOT NULL,
    from_subject_id text        NOT NULL,
    since           timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (agency_id, subject_id, subscription_id)
);
CREATE INDEX followed_subjects_by_subscription ON followed_subjects (subscription_id);
