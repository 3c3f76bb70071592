-- Subjects an agency sealed (custody.subject-sealed.v1), by each identifier a notice may carry: nothing about them
-- is sent from then on, including notices still waiting (quiet hours, repeats) or arriving later.
CREATE TABLE sealed_subjects (
    agency_id  text        NOT NULL,
    case_kind  text        NOT NULL,
    case_value text        NOT NULL,   -- normalised, as notifications.case_value
    sealed_at  timestamptz NOT NULL,
    PRIMARY KEY (agency_id, case_kind, case_value)
);
