"""Matching's counts reach operators only: its stats need the operator token, ops shows them after login."""

from __future__ import annotations

import httpx
import pytest

from services.matching.app import create_app as create_matching
from services.ops.app import create_app as create_ops
from services.ops.settings import OpsSettings
from shared.settings import KafkaSettings
from tests import servers
from tests.apps import running_app
from tests.matching.helpers import matching_settings
from tests.ops.conftest import ADMIN, log_in

pytestmark = pytest.mark.integration


async def test_stats_need_the_operator_token_and_ops_shows_them_to_operators(
    ops_settings: OpsSettings, kafka_settings: KafkaSettings, postgres_admin_dsn: str, unique: str
) -> None:
    database = await servers.create_database(postgres_admin_dsn, f"matching_{unique}")
    matching_app = create_matching(matching_settings(database, kafka_settings, unique))
    async with running_app(matching_app) as matching:
        assert (await matching.get("/v1/matching/stats", params={"agency_id": "county"})).status_code == 401
        forged = await matching.get("/v1/matching/stats", headers={"Authorization": "Bearer guessed-token-123"})
        assert forged.status_code == 401
        to_matching = httpx.ASGITransport(app=matching_app)
        async with running_app(create_ops(ops_settings, matching_transport=to_matching)) as ops:
            assert (await ops.get("/api/matching", params={"agency_id": "county"})).status_code == 401
            await log_in(ops, *ADMIN)
            counts = await ops.get("/api/matching", params={"agency_id": "county"})
            assert counts.status_code == 200
            assert counts.json()["active_subscriptions"] == 0
        wrong_token = ops_settings.model_copy(update={"matching_operator_token": "not-matching-s-token"})
        async with running_app(create_ops(wrong_token, matching_transport=to_matching)) as ops:
            await log_in(ops, *ADMIN)
            refused = await ops.get("/api/matching")
            assert refused.status_code == 502
            assert "matching refused ops' admin token" in refused.json()["detail"]
