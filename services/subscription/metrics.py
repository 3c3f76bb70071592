"""Prometheus metrics of the subscription service."""

from __future__ import annotations

from prometheus_client import Counter

SUBSCRIPTIONS_CHANGED = Counter("cw_subscription_changes_total", "Subscription changes published, by kind", ["change"])
CODES_ISSUED = Counter("cw_subscription_codes_issued_total", "Verification codes issued", ["channel"])
VERIFY_ATTEMPTS = Counter("cw_subscription_verify_attempts_total", "Verification code attempts", ["outcome"])
SMS_KEYWORDS = Counter("cw_subscription_inbound_sms_total", "Inbound SMS by keyword", ["keyword"])
