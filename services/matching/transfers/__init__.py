"""Subscriptions that follow a person transferred to another participating agency: who follows (domain), carrying
them over (flows), their table (store)."""
