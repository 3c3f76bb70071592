"""Plumbing shared by every Custody Watch service: events, Kafka, PostgreSQL, settings, logs, metrics."""
