-- What an attempt recorded just before its provider call, so whoever takes it over after a crash can ask the
-- provider whether the call went through instead of sending blindly (Twilio's Messages API has no idempotency key).
ALTER TABLE attempts ADD COLUMN calling_at timestamptz;        -- set (and committed) right before the provider call
ALTER TABLE attempts ADD COLUMN body_fingerprint text;         -- SMS: sha256 of the body, never the body itself
ALTER TABLE attempts ADD COLUMN email_message_id text;         -- email: the Message-ID header of the message

-- An operator's replay of a parked notice: the dead letter it came from (a second delivery of the same replayed
-- record changes nothing), and the purpose of the attempt it asks for.
ALTER TABLE notifications ADD COLUMN replayed_from text;
ALTER TABLE notifications ADD COLUMN next_purpose text;

-- Each provider's send rate, shared by every delivery replica: a token bucket updated under its row lock.
CREATE TABLE send_rate_buckets (
    bucket     text             PRIMARY KEY,
    tokens     double precision NOT NULL,
    updated_at timestamptz      NOT NULL
);

-- Take up to `wanted` send slots of `bucket` (refilled at `rate` per second, holding at most `burst`); returns how
-- many were granted (0 when the bucket is empty). One round trip grants a whole batch of slots.
CREATE FUNCTION take_send_slots(bucket_name text, wanted integer, rate double precision, burst double precision)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    held double precision;
    since timestamptz;
    now_at timestamptz;
    available double precision;
    granted integer;
BEGIN
    INSERT INTO send_rate_buckets (bucket, tokens, updated_at) VALUES (bucket_name, burst, clock_timestamp())
        ON CONFLICT (bucket) DO NOTHING;
    SELECT tokens, updated_at INTO held, since FROM send_rate_buckets WHERE bucket = bucket_name FOR UPDATE;
    now_at := greatest(clock_timestamp(), since);  -- read after the lock: time never runs backwards here
    available := least(burst, held + rate * extract(epoch FROM now_at - since));
    granted := greatest(0, least(wanted, floor(available)::integer));
    UPDATE send_rate_buckets SET tokens = available - granted, updated_at = now_at WHERE bucket = bucket_name;
    RETURN granted;
END
$$;
