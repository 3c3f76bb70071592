"""Settings of the ingest service (environment prefix ``INGEST_``)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings

# Usable only in development and test (ops' development default matches it); refused in production.
DEV_ADMIN_TOKEN = "ingest-dev-admin-token"  # noqa: S105 - refused in production


class IngestSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="INGEST_", env_nested_delimiter="__", extra="ignore", frozen=True)

    development_secrets: ClassVar[tuple[str, ...]] = ("admin_token",)

    service_name: str = "ingest"
    http_port: int = Field(default=8001, ge=0, le=65535)
    public_base_url: str = "http://127.0.0.1:8001"

    admin_token: str = Field(default=DEV_ADMIN_TOKEN, min_length=16, description="Bearer token of the admin API.")
    max_body_bytes: int = Field(default=20 * 1024 * 1024, ge=1024, description="Largest JSON batch accepted.")
    max_records_per_batch: int = Field(default=10_000, ge=5_000, description="Most records in one JSON batch.")
    max_file_bytes: int = Field(default=1024 * 1024 * 1024, ge=1024, description="Largest CSV file accepted.")
    file_chunk_bytes: int = Field(default=1024 * 1024, ge=1024, description="CSV uploads are stored in such chunks.")
    file_rows_per_transaction: int = Field(default=2_000, ge=1, description="CSV rows applied per transaction.")
    max_clock_skew_seconds: int = Field(default=300, ge=0, description="How far in the future effective_at may be.")
    recovery_interval_seconds: float = Field(default=5.0, gt=0, description="How often stored batches are checked.")
    recovery_grace_seconds: float = Field(
        default=30.0, ge=0, description="A stored JSON batch unprocessed this long is processed by the recovery loop."
    )
    feed_health_interval_seconds: float = Field(default=30.0, gt=0, description="How often feed silence is checked.")
