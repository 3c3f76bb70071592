-- The latest subscription.state.v1 of each subscription, reduced to what decides whether a waiting notice may go:
-- its status, and per channel whether its contact is active (not STOPped, unsubscribed or bounced) and verified.
-- No contact details: only the masked form, to notice a contact that was replaced.
CREATE TABLE subscription_states (
    subscription_id text        PRIMARY KEY,
    status          text        NOT NULL,
    version         integer     NOT NULL,
    contacts        jsonb       NOT NULL,   -- {"sms": {"active": true, "verified": true, "masked": "..."}, ...}
    updated_at      timestamptz NOT NULL
);

-- Why a notice ended without being sent (stopped-by-subscriber, subscription-cancelled, ...).
ALTER TABLE notifications ADD COLUMN stop_reason text;
