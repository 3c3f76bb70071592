"""Delivery service: turns ``notification.requested`` into SMS and email that arrive once, with receipts."""
