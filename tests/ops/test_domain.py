"""Unit tests of the ops dashboard's pure logic: no servers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from services.ops.auth.domain import Role, SessionSigner, hash_password, may_act, safe_next
from services.ops.auth.flows import authenticate
from services.ops.deliveries.domain import Bar, chart_columns, display_safe, group_counts, latency_seconds
from services.ops.feeds.domain import (
    FeedHealth,
    FeedHealthFormatError,
    feed_alert_event_id,
    feed_transition,
    is_stale,
    parse_feed_health,
    with_paused,
)
from services.ops.pipeline.domain import ReplayRefusedError, consumer_lag, replay_target
from services.ops.settings import DEV_SESSION_SECRET, OpsSettings
from shared.events import DeliveryStatus
from tests.kafkautil import PRODUCTION_KAFKA

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def feed(**changes: object) -> FeedHealth:
    values: dict[str, object] = {
        "agency_id": "county-jail",
        "name": "County Jail",
        "last_feed_at": NOW - timedelta(minutes=10),
        "expected_feed_interval_minutes": 15,
    }
    return FeedHealth.model_validate(values | changes)


def test_only_admins_act() -> None:
    assert may_act(Role.ADMIN)
    assert not may_act(Role.VIEWER)


def test_feed_is_stale_only_after_its_expected_interval() -> None:
    assert not is_stale(feed(last_feed_at=NOW - timedelta(minutes=15)), NOW)
    assert is_stale(feed(last_feed_at=NOW - timedelta(minutes=15, seconds=1)), NOW)
    assert is_stale(feed(expected_feed_interval_minutes=5), NOW)


def test_never_fed_agency_follows_ingests_judgement_and_ingests_flag_wins() -> None:
    assert not is_stale(feed(last_feed_at=None, stale=False), NOW)
    assert is_stale(feed(last_feed_at=None, stale=True), NOW)
    assert is_stale(feed(stale=True), NOW)


@pytest.mark.parametrize(
    ("was", "now", "expected"),
    [
        (None, False, None),
        (None, True, "feed_stale"),
        (False, True, "feed_stale"),
        (True, True, None),
        (True, False, "feed_recovered"),
        (False, False, None),
    ],
)
def test_one_alert_per_outage(was: bool | None, now: bool, expected: str | None) -> None:
    assert feed_transition(was, now) == expected


def test_alert_ids_are_deterministic_per_outage() -> None:
    started = NOW - timedelta(hours=1)
    assert feed_alert_event_id("a", "feed_stale", started) == feed_alert_event_id("a", "feed_stale", started)
    assert feed_alert_event_id("a", "feed_stale", started) != feed_alert_event_id("a", "feed_stale", NOW)
    assert feed_alert_event_id("a", "feed_stale", started) != feed_alert_event_id("a", "feed_recovered", started)


def test_parses_ingests_feed_health_shape() -> None:
    document = [
        {
            "agency_id": "county-jail",
            "name": "County Jail",
            "last_feed_at": "2026-11-27T11:00:00Z",
            "expected_feed_interval_minutes": 30,
            "stale": True,
            "in_custody": 412,
            "records_last_24h": {"accepted": 90, "rejected": 3, "duplicate": 7},
            "records_total": {"accepted": 9000, "rejected": 30},
        }
    ]
    (parsed,) = parse_feed_health(document)
    assert parsed.records_accepted == 90
    assert parsed.records_rejected == 3
    assert parsed.in_custody == 412
    assert parsed.stale
    assert parsed.last_feed_at == datetime(2026, 11, 27, 11, tzinfo=UTC)
    assert parse_feed_health({"agencies": document}) == [parsed]


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"feeds": []}, "expected a list"),
        ("nope", "expected a list"),
        ([{"name": "no id"}], "agency #0: agency_id"),
        ([{"agency_id": "a", "expected_feed_interval_minutes": 0}], "expected_feed_interval_minutes"),
    ],
)
def test_rejects_a_feed_health_answer_it_does_not_understand(document: object, message: str) -> None:
    with pytest.raises(FeedHealthFormatError, match=message):
        parse_feed_health(document)


def test_pause_flags_fill_in_only_where_missing() -> None:
    feeds = [feed(agency_id="a"), feed(agency_id="b", notices_paused=False), feed(agency_id="c")]
    merged = with_paused(feeds, {"a": True, "b": True})
    assert [f.notices_paused for f in merged] == [True, False, None]


def test_lag_sums_partitions_and_never_goes_negative() -> None:
    committed = {("t1", 0): 5, ("t1", 1): 10, ("t2", 0): 7, ("gone", 0): 1}
    end = {("t1", 0): 8, ("t1", 1): 10, ("t2", 0): 3}
    assert consumer_lag(committed, end) == {"t1": 3, "t2": 0}


def test_replay_goes_only_to_this_deployments_event_topics() -> None:
    known = ["notification.requested.v1", "custody.status-changed.v1"]
    assert replay_target("p.notification.requested.v1", "p.", known) == "p.notification.requested.v1"
    with pytest.raises(ReplayRefusedError, match="no cw-original-topic"):
        replay_target(None, "p.", known)
    with pytest.raises(ReplayRefusedError, match="not one of"):
        replay_target("q.notification.requested.v1", "p.", known)
    with pytest.raises(ReplayRefusedError, match="not one of"):
        replay_target("p.dlq.delivery", "p.", known)


def test_counts_group_by_channel_and_provider() -> None:
    rows = [
        ("sms", "twilio", "created", 4),
        ("sms", "twilio", "sent", 3),
        ("sms", "twilio", "delivered", 2),
        ("sms", "twilio", "temporary-failure", 1),
        ("sms", "twilio", "permanent-failure", 1),
        ("email", None, "created", 2),
    ]
    email, sms = group_counts(rows)
    assert (email.channel, email.provider, email.requested, email.failed) == ("email", "—", 2, 0)
    assert (sms.requested, sms.sent, sms.delivered, sms.failed) == (4, 3, 2, 2)


def test_latency_only_for_handoff_and_delivery() -> None:
    received = NOW - timedelta(seconds=42)
    assert latency_seconds(DeliveryStatus.SENT, NOW, received) == 42
    assert latency_seconds(DeliveryStatus.DELIVERED, NOW, received) == 42
    assert latency_seconds(DeliveryStatus.TEMPORARY_FAILURE, NOW, received) is None
    assert latency_seconds(DeliveryStatus.SENT, NOW, None) is None
    assert latency_seconds(DeliveryStatus.SENT, received, NOW) == 0


def test_chart_scales_to_the_tallest_column() -> None:
    columns = chart_columns(
        [Bar(label="10:00", delivered=10, failed=0), Bar(label="11:00", delivered=5, failed=5)], width=200, height=100
    )
    assert [c.delivered_height for c in columns] == [100, 50]
    assert columns[1].failed_height == 50
    assert columns[1].failed_y == 0
    assert chart_columns([]) == []
    (flat,) = chart_columns([Bar(label="x", delivered=0, failed=0)])
    assert flat.delivered_height == 0


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("+1•••••••67", "+1•••••••67"),
        ("j•••@e•••.org", "j•••@e•••.org"),
        ("+15551234567", "[phone redacted]"),
        ("jane.doe@example.org", "[email redacted]"),
        (None, None),
    ],
)
def test_full_contacts_are_never_displayed(text: str | None, shown: str | None) -> None:
    assert display_safe(text) == shown


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("/search?q=x", "/search?q=x"),
        ("//evil.example", "/"),
        ("https://evil.example", "/"),
        (None, "/"),
        ("/\\x", "/"),
    ],
)
def test_login_only_redirects_within_the_site(target: str | None, expected: str) -> None:
    assert safe_next(target) == expected


def test_session_cookie_is_signed() -> None:
    signer = SessionSigner(OpsSettings(environment="test"))
    cookie = signer.sign("session-1")
    assert signer.unsign(cookie) == "session-1"
    assert signer.unsign(cookie[:-2] + ("AA" if not cookie.endswith("AA") else "BB")) is None
    other = SessionSigner(OpsSettings(environment="test", session_secret="another-secret-of-at-least-32-chars!"))
    assert other.unsign(cookie) is None


def test_production_refuses_development_secrets() -> None:
    with pytest.raises(
        ValidationError,
        match="OPS_SESSION_SECRET, OPS_INGEST_ADMIN_TOKEN, OPS_BOOTSTRAP_ADMIN_PASSWORD, OPS_DELIVERY_OPERATOR_TOKEN, "
        "OPS_MATCHING_OPERATOR_TOKEN",
    ):
        OpsSettings(environment="production", kafka=PRODUCTION_KAFKA)
    settings = OpsSettings(
        environment="production",
        session_secret="IPyQ_5CrvJaAJB7dpp2LX85OL56tQXpNpNIBxVO1",
        ingest_admin_token="UTAypJh2U0-1TgAlX1tWg3Rc8stTRGf0k83sNA7w",
        delivery_operator_token="FJPHKuC02971Ib3vGPjiaxHP1Vbs82KVCFhyZs0c",
        matching_operator_token="p3W9-zQeLr7TkVu2XsYb5NdGh8JmCa4F",
        kafka=PRODUCTION_KAFKA,
        bootstrap_admin_username="",
        bootstrap_admin_password="",
    )
    assert settings.bootstrap_admin_password is None
    assert settings.cookie_secure
    assert settings.session_secret != DEV_SESSION_SECRET


def test_settings_reject_bad_values() -> None:
    with pytest.raises(ValidationError, match="at least 12"):
        OpsSettings(bootstrap_admin_password="short")
    with pytest.raises(ValidationError, match="invalid consumer group"):
        OpsSettings(consumer_groups=["ok", "bad group"])
    with pytest.raises(ValidationError, match="secure_cookies"):
        OpsSettings(
            environment="production",
            session_secret="IPyQ_5CrvJaAJB7dpp2LX85OL56tQXpNpNIBxVO1",
            ingest_admin_token="UTAypJh2U0-1TgAlX1tWg3Rc8stTRGf0k83sNA7w",
            delivery_operator_token="FJPHKuC02971Ib3vGPjiaxHP1Vbs82KVCFhyZs0c",
            matching_operator_token="p3W9-zQeLr7TkVu2XsYb5NdGh8JmCa4F",
            kafka=PRODUCTION_KAFKA,
            bootstrap_admin_password="a-long-enough-password",
            secure_cookies=False,
        )


class FakeConnection:
    """Only what ``authenticate`` asks of the store, to check hashing without a database."""

    def __init__(self, password_hash: str | None) -> None:
        self.password_hash = password_hash

    async def fetchrow(self, *_: object) -> dict[str, str] | None:
        if self.password_hash is None:
            return None
        return {"username": "ana", "password_hash": self.password_hash, "role": "admin"}

    async def execute(self, *_: object) -> None:
        return None


async def test_passwords_are_hashed_and_checked() -> None:
    hashed = hash_password("correct horse battery")
    assert "correct horse" not in hashed
    assert await authenticate(FakeConnection(hashed), "ana", "correct horse battery") is Role.ADMIN  # type: ignore[arg-type]
    assert await authenticate(FakeConnection(hashed), "ana", "wrong") is None  # type: ignore[arg-type]
    assert await authenticate(FakeConnection(None), "nobody", "anything") is None  # type: ignore[arg-type]


def test_stand_in_feed_health_answers_in_ingests_own_shape() -> None:
    """The integration tests' stand-in must keep to the real ingest schema, which ops parses."""
    from services.ingest.feed_health.schemas import FeedHealth as IngestFeedHealth
    from tests.ops.conftest import FeedHealthServer

    server = FeedHealthServer()
    server.add("county-jail", quiet_minutes=5)
    (answer,) = server.agencies.values()
    assert set(answer) == set(IngestFeedHealth.model_fields)
    real = IngestFeedHealth.model_validate(answer)
    (parsed,) = parse_feed_health([real.model_dump(mode="json")])
    assert (parsed.records_accepted, parsed.records_rejected, parsed.in_custody) == (120, 4, 321)
