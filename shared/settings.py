"""Settings common to every service.

Each service subclasses :class:`ServiceSettings` with its own environment prefix (``INGEST_``,
``SUBSCRIPTION_``...), so one shell can hold the configuration of all services without clashes.
"""

from __future__ import annotations

import ipaddress
import math
import ssl
from collections import Counter
from typing import Annotated, Any, ClassVar, Literal, Self
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from shared.crypto import ContactCipher

Environment = Literal["development", "test", "production"]


class KafkaSettings(BaseModel):
    """How to reach Kafka; turns itself into client keyword arguments so no service builds them by hand."""

    bootstrap_servers: str = "127.0.0.1:9092"
    topic_prefix: str = Field(
        default="",
        description="Prepended to every topic name; lets tests and several deployments share one broker.",
    )
    client_id: str = "custody-watch"
    request_timeout_ms: int = 30_000
    security_protocol: Literal["PLAINTEXT", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        default="PLAINTEXT",
        description="SASL_SSL in production (each service its own SCRAM-SHA-512 principal); PLAINTEXT only for a "
        "local broker without authentication, and refused in production.",
    )
    sasl_username: str | None = Field(default=None, description="This service's Kafka principal (its name).")
    sasl_password: str | None = Field(default=None, description="The principal's SCRAM-SHA-512 password.")
    ssl_cafile: str | None = Field(default=None, description="CA of the broker's certificate (default: system CAs).")

    @field_validator("bootstrap_servers")
    @classmethod
    def _non_empty(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("KAFKA bootstrap servers must not be empty (host:port[,host:port])")
        return value.strip()

    @model_validator(mode="after")
    def _sasl_needs_credentials(self) -> Self:
        if self.security_protocol != "PLAINTEXT" and not (self.sasl_username and self.sasl_password):
            raise ValueError(f"KAFKA security_protocol {self.security_protocol} needs sasl_username and sasl_password")
        return self

    def common_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap_servers,
            "client_id": self.client_id,
            "request_timeout_ms": self.request_timeout_ms,
            "security_protocol": self.security_protocol,
        }
        if self.security_protocol != "PLAINTEXT":
            kwargs |= {
                "sasl_mechanism": "SCRAM-SHA-512",
                "sasl_plain_username": self.sasl_username,
                "sasl_plain_password": self.sasl_password,
            }
        if self.security_protocol == "SASL_SSL":
            kwargs["ssl_context"] = ssl.create_default_context(cafile=self.ssl_cafile)
        return kwargs

    def producer_kwargs(self, transactional_id: str | None = None) -> dict[str, Any]:
        kwargs = self.common_kwargs() | {
            "acks": "all",
            "enable_idempotence": True,
            "linger_ms": 5,
            "max_batch_size": 256 * 1024,
        }
        if transactional_id is not None:
            kwargs["transactional_id"] = transactional_id
        return kwargs

    def consumer_kwargs(self, group_id: str, *, read_committed: bool = True) -> dict[str, Any]:
        return self.common_kwargs() | {
            "group_id": group_id,
            "enable_auto_commit": False,
            "auto_offset_reset": "earliest",
            "isolation_level": "read_committed" if read_committed else "read_uncommitted",
            "max_poll_records": 500,
        }

    def topic(self, name: str) -> str:
        return f"{self.topic_prefix}{name}"


class ServiceSettings(BaseSettings):
    """Base for each service's settings; validated at start-up so a bad value stops the service with a clear error."""

    model_config = SettingsConfigDict(env_nested_delimiter="__", extra="ignore", frozen=True)

    environment: Environment = "development"
    service_name: str = "custody-watch"
    database_url: str = "postgresql://postgres@127.0.0.1:5432/postgres"
    database_pool_min: int = Field(default=1, ge=1)
    database_pool_max: int = Field(default=10, ge=1)
    kafka: KafkaSettings = KafkaSettings()
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8000, ge=0, le=65535)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    public_base_url: str = "http://127.0.0.1:8000"
    trusted_proxies: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated addresses or CIDRs of our own reverse proxies (the ingress): X-Forwarded-For "
        "is believed only when the peer is one of them, and the client is the nearest address not in the list.",
    )
    max_request_body_bytes: int = Field(
        default=1024 * 1024, ge=1024, description="Largest request body, unless an endpoint allows more (feeds)."
    )
    max_form_body_bytes: int = Field(
        default=64 * 1024, ge=1024, description="Largest form body (provider webhooks, login): refused before parsing."
    )
    max_json_depth: int = Field(default=32, ge=2, le=1000, description="Deepest JSON nesting accepted (400 beyond).")

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _proxy_list(cls, value: object) -> object:
        return [part.strip() for part in value.split(",") if part.strip()] if isinstance(value, str) else value

    @field_validator("trusted_proxies")
    @classmethod
    def _proxy_networks(cls, value: list[str]) -> list[str]:
        for entry in value:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ValueError(f"trusted_proxies: {entry!r} is not an IP address or CIDR") from None
        return value

    @field_validator("database_url")
    @classmethod
    def _postgres_url(cls, value: str) -> str:
        if not value.startswith(("postgresql://", "postgres://")):
            raise ValueError("database_url must be a postgresql:// URL")
        return value

    development_secrets: ClassVar[tuple[str, ...]] = ()
    """Fields whose defaults exist only so development and tests work out of the box: production refuses them."""

    @model_validator(mode="after")
    def _pool_bounds(self) -> Self:
        if self.database_pool_min > self.database_pool_max:
            raise ValueError("database_pool_min must not exceed database_pool_max")
        return self

    @model_validator(mode="after")
    def _no_development_secrets_in_production(self) -> Self:
        if self.environment != "production":
            return self
        fields = type(self).model_fields
        prefix = str(self.model_config.get("env_prefix", ""))
        defaults: list[str] = []
        placeholders: list[str] = []
        for name in self.development_secrets:
            value = getattr(self, name)
            if value is None:
                continue
            if value == fields[name].default:
                defaults.append(prefix + name.upper())
            elif is_secret_name(name) and (reason := placeholder_reason(str(value))):
                placeholders.append(f"{prefix}{name.upper()} {reason}")
        if self.kafka.security_protocol == "PLAINTEXT":
            placeholders.append(f"{prefix}KAFKA__SECURITY_PROTOCOL is PLAINTEXT (no service identity on Kafka)")
        elif self.kafka.sasl_password and (reason := placeholder_reason(self.kafka.sasl_password)):
            placeholders.append(f"{prefix}KAFKA__SASL_PASSWORD {reason}")
        database_password = urlsplit(self.database_url).password
        if database_password and (word := placeholder_word(database_password)):
            placeholders.append(f"{prefix}DATABASE_URL has a placeholder password (contains {word!r})")
        problems = ([f"with development defaults for: {', '.join(defaults)}"] if defaults else []) + placeholders
        if problems:
            raise ValueError("refusing to start in production " + "; ".join(problems))
        return self


SECRET_NAME_PARTS = ("key", "secret", "token", "password")


def is_secret_name(name: str) -> bool:
    """Keys, secrets, tokens and passwords are checked for placeholders; a sender number only for its default."""
    return any(part in name for part in SECRET_NAME_PARTS)


PLACEHOLDER_WORDS = ("change", "example", "placeholder", "replace", "not-for-production", "dev-", "xxxx")
SECRET_MIN_LENGTH = 16
SECRET_MIN_BITS = 72.0


def placeholder_word(value: str) -> str | None:
    """The placeholder word a value contains (``CHANGE-ME``, ``changeme``, ``example``...), if any."""
    lowered = value.lower()
    return next((word for word in PLACEHOLDER_WORDS if word in lowered), None)


def estimated_bits(value: str) -> float:
    """Shannon entropy of the value's characters times its length: a generous estimate, good at catching ``aaaa``."""
    return sum(count * math.log2(len(value) / count) for count in Counter(value).values())


def placeholder_reason(value: str) -> str | None:
    """Why a production secret looks like a placeholder rather than a generated value, or None when it does not."""
    if word := placeholder_word(value):
        return f"looks like a placeholder (contains {word!r})"
    if len(value) < SECRET_MIN_LENGTH:
        return f"is too short ({len(value)} characters; at least {SECRET_MIN_LENGTH})"
    if estimated_bits(value) < SECRET_MIN_BITS:
        return f"has too little entropy (about {estimated_bits(value):.0f} bits; at least {SECRET_MIN_BITS:.0f})"
    return None


DEV_OPERATOR_TOKEN = "operator-dev-token-not-for-production"  # noqa: S105 - refused in production


class OperatorTokenSettings(ServiceSettings):
    """Settings of a service whose operator API (stats, ``/v1/admin``) answers only to its bearer token."""

    development_secrets: ClassVar[tuple[str, ...]] = ("operator_token",)

    operator_token: str = Field(
        default=DEV_OPERATOR_TOKEN, min_length=16, description="Bearer token of this service's operator API."
    )


# Development-only contact keys, shared by the services that encrypt (subscription) and decrypt (delivery).
DEV_CONTACT_ENCRYPTION_KEY = "c3Vic2NyaXB0aW9uLWRldi1rZXktMDAwMDAwMDAwMDA="
DEV_BLIND_INDEX_KEY = "subscription-dev-blind-index-key-not-for-production"


class ContactCryptoSettings(ServiceSettings):
    """Settings of a service that encrypts or decrypts contact points; both sides must hold the same keys."""

    development_secrets: ClassVar[tuple[str, ...]] = ("contact_encryption_keys", "blind_index_key")

    contact_encryption_keys: str = Field(
        default=DEV_CONTACT_ENCRYPTION_KEY, description="Comma-separated Fernet keys, newest first."
    )
    blind_index_key: str = Field(default=DEV_BLIND_INDEX_KEY, description="HMAC key of the contact blind index.")

    @model_validator(mode="after")
    def _usable_keys(self) -> Self:
        self.contact_cipher()  # a bad key stops the service at start-up, not on its first notice
        return self

    def contact_cipher(self) -> ContactCipher:
        return ContactCipher(self.contact_encryption_keys, self.blind_index_key)
