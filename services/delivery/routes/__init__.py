"""Delivery's HTTP routes, one module per resource; shared dependencies are in ``deps``."""
