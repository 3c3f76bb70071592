"""Subscription service: victims subscribe to a case, verify a phone or email, and can always stop."""
