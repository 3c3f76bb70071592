"""Delivery's channels: one module each behind :class:`base.DeliveryChannel`; ``registry`` maps a Channel to its."""
