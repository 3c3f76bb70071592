"""Signed acknowledgement links: the token proves which notification it acknowledges, and nothing more."""

from __future__ import annotations

from itsdangerous import BadSignature, URLSafeSerializer


class AcknowledgementTokens:
    def __init__(self, secret: str) -> None:
        self._serializer = URLSafeSerializer(secret, salt="delivery.acknowledge")

    def sign(self, notification_id: str) -> str:
        return str(self._serializer.dumps(notification_id))

    def notification_id(self, token: str) -> str | None:
        """The notification a token acknowledges, or None for a forged or damaged token."""
        try:
            value = self._serializer.loads(token)
        except BadSignature:
            return None
        return value if isinstance(value, str) else None

    def url(self, public_base_url: str, notification_id: str) -> str:
        return f"{public_base_url.rstrip('/')}/v1/ack/{self.sign(notification_id)}"
