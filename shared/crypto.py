"""Encryption of contact points at rest and on Kafka, and the keyed hash (blind index) used to find them.

Keys come from settings as a comma-separated list of Fernet keys, newest first: data encrypted with an older key
still decrypts, and :meth:`ContactCipher.rotate` re-encrypts it with the newest.
"""

from __future__ import annotations

import hashlib
import hmac

from cryptography.fernet import Fernet, InvalidToken, MultiFernet


class ContactDecryptError(ValueError):
    """The ciphertext was made with a key we no longer have, or was altered."""


class ContactCipher:
    def __init__(self, encryption_keys: str, blind_index_key: str) -> None:
        keys = [key.strip() for key in encryption_keys.split(",") if key.strip()]
        if not keys:
            raise ValueError("at least one contact encryption key is required")
        try:
            self._fernet = MultiFernet([Fernet(key) for key in keys])
        except ValueError as error:
            raise ValueError(f"invalid contact encryption key: {error}") from None
        if len(blind_index_key) < 32:
            raise ValueError("the blind index key must be at least 32 characters")
        self._index_key = blind_index_key.encode()

    def encrypt(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode()).decode()

    def decrypt(self, ciphertext: str) -> str:
        try:
            return self._fernet.decrypt(ciphertext.encode()).decode()
        except InvalidToken:
            raise ContactDecryptError("contact ciphertext cannot be decrypted with the configured keys") from None

    def rotate(self, ciphertext: str) -> str:
        return self._fernet.rotate(ciphertext.encode()).decode()

    def blind_index(self, normalised_contact: str) -> str:
        """Same contact, same index; without the key the index reveals nothing about the contact."""
        return hmac.new(self._index_key, normalised_contact.encode(), hashlib.sha256).hexdigest()


def mask_phone(e164: str) -> str:
    """+15551234567 -> +1•••••••67: enough for a victim to recognise, not enough to call."""
    if len(e164) <= 4:
        return "•" * len(e164)
    return e164[:2] + "•" * (len(e164) - 4) + e164[-2:]


def mask_email(address: str) -> str:
    """jane.doe@example.org -> j•••@e•••.org"""
    local, _, domain = address.partition("@")
    host, _, tld = domain.rpartition(".")
    return f"{local[:1]}•••@{host[:1]}•••.{tld}" if host else f"{local[:1]}•••@•••"


def generate_key() -> str:
    return Fernet.generate_key().decode()
