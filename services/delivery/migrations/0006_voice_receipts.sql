-- Calls whose final status callback never came are asked about like SMS (Twilio's GET Calls/{sid}.json).
DROP INDEX attempts_awaiting_receipt;
CREATE INDEX attempts_awaiting_receipt ON attempts (handed_off_at)
    WHERE status IN ('sending', 'sent') AND channel IN ('sms', 'voice');
