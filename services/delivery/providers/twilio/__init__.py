"""Everything Twilio-specific of delivery: its REST API (``rest``), Messages (``sms``), Programmable Voice
(``voice``): requests, error codes, status maps. Webhook signatures are checked by ``shared.twilio``."""
