"""Delivery's use cases, each combining domain rules, the store and the outbox (see ``flows.events``)."""
