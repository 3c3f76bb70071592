"""Reminders of a scheduled release or court date: the schedule (domain), planning and sending them (flows), their
table (store)."""
