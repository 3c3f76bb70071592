"""The dashboard in a real headless Chromium against the running system: the ops service and the real ingest
service (both over HTTP on free ports), real Kafka and PostgreSQL."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import httpx
import pytest
from playwright.async_api import Browser, Locator, Page, expect
from playwright.async_api import Error as PlaywrightError

from services.ingest.app import create_app as create_ingest_app
from services.ingest.settings import IngestSettings
from services.ops.app import create_app
from services.ops.auth.domain import Role, hash_password
from services.ops.auth.store import create_operator
from services.ops.settings import OpsSettings
from shared.envelope import decode, encode, new_event
from shared.events import DeliveryStatus, NotificationStatusChanged, SubjectIdentifier
from shared.settings import KafkaSettings
from shared.topics import CUSTODY_STATUS_CHANGED, NOTIFICATION_STATUS_CHANGED, consumer_group_topics, ensure_topics
from shared.vocabulary import Channel, IdentifierKind
from tests.e2e.browser import chromium
from tests.kafkautil import produce_raw, read_topic
from tests.ops.conftest import ADMIN, serving
from tests.ops.standins import DELIVERY_TOKEN, DeliveryStandIn, IngestStandIn, call_attempt, storm_hold
from tests.ops.standins import INGEST_TOKEN as STANDIN_INGEST_TOKEN
from tests.ops.test_ops_integration import dead_letter

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOT = ROOT / "test-artifacts" / "dashboard.png"
STORM_SCREENSHOT = ROOT / "test-artifacts" / "storm-hold.png"
CALL_SCREENSHOT = ROOT / "test-artifacts" / "voice-notice.png"
INGEST_TOKEN = "browser-test-ingest-admin-token"
VIEWER = ("victor", "viewer-password-for-tests")


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with chromium() as launched:
        yield launched


@pytest.fixture
async def ingest_url(postgres_admin_dsn: str, kafka_settings: KafkaSettings, unique: str) -> AsyncIterator[str]:
    """The real ingest service with one agency whose feed has been quiet for longer than its interval."""
    from tests import servers

    database_url = await servers.create_database(postgres_admin_dsn, f"test_{unique}_ingest")
    settings = IngestSettings(
        environment="test", database_url=database_url, kafka=kafka_settings, admin_token=INGEST_TOKEN
    )
    async with serving(create_ingest_app(settings)) as url:
        async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {INGEST_TOKEN}"}) as client:
            created = await client.post(
                "/v1/admin/agencies",
                json={
                    "agency_id": f"quiet-{unique}",
                    "name": "Quiet County Jail",
                    "timezone": "America/Chicago",
                    "expected_feed_interval_minutes": 15,
                },
            )
            assert created.status_code == 201, created.text
        connection = await asyncpg.connect(database_url)
        try:  # the feed arrived two hours ago and nothing since
            await connection.execute(
                "UPDATE agencies SET created_at = now() - interval '3 hours', last_feed_at = now() - interval '2 hours'"
            )
        finally:
            await connection.close()
        yield url


async def screenshot_live(element: Locator, path: Path) -> None:
    """A screenshot of part of the live sections, which the page replaces every refresh: taken again if the
    element was replaced while the screenshot waited for it to be stable."""
    for _ in range(3):
        try:
            await element.screenshot(path=str(path))
            return
        except PlaywrightError as error:
            if "not attached to the DOM" not in str(error):
                raise
    await element.screenshot(path=str(path))


async def call_row_link(page: Page, base_url: str, notification_id: str) -> None:
    """Open a notice from the dashboard's newest notices, as an operator would."""
    await page.goto(base_url + "/")
    await page.locator(f'tr[data-notification-id="{notification_id}"] a').click()
    await expect(page).to_have_url(re.compile(f"/notifications/{notification_id}$"))


async def log_in(page: Page, base_url: str, username: str, password: str) -> None:
    await page.goto(base_url + "/")
    await expect(page).to_have_url(re.compile(r"/login\?next="))
    await page.fill("input[name=username]", username)
    await page.fill("input[name=password]", password)
    await page.click("button[type=submit]")
    await expect(page.locator("#live")).to_be_visible()


@pytest.fixture
def browser_ops_settings(
    ingest_url: str, database_url: str, kafka_settings: KafkaSettings, watched_group: str
) -> OpsSettings:
    return OpsSettings(
        environment="test",
        database_url=database_url,
        kafka=kafka_settings,
        ingest_url=ingest_url,
        ingest_admin_token=INGEST_TOKEN,
        feed_poll_interval_seconds=0.5,
        pipeline_poll_interval_seconds=0.5,
        refresh_seconds=1.0,
        consumer_groups=["ops", watched_group],
        bootstrap_admin_username=ADMIN[0],
        bootstrap_admin_password=ADMIN[1],
        delivery_url="http://delivery.test",
        delivery_operator_token=DELIVERY_TOKEN,
    )


def voice_notice(notification_id: str, agency_id: str, placed: datetime, delivery: DeliveryStandIn) -> list[bytes]:
    """A release call that an answering machine took, then a person who keyed in the PIN: the events ops receives
    and, in delivery's stand-in, the calls as delivery records them."""
    answered = placed + timedelta(hours=2)
    steps = [
        (DeliveryStatus.SENDING, placed, 1),
        (DeliveryStatus.DELIVERED, placed + timedelta(minutes=1), 1),
        (DeliveryStatus.SENDING, answered, 2),
        (DeliveryStatus.SENT, answered + timedelta(seconds=10), 2),
        (DeliveryStatus.DELIVERED, answered + timedelta(minutes=2), 2),
    ]
    events = [
        encode(
            new_event(
                NotificationStatusChanged(
                    notification_id=notification_id,
                    subscription_id=f"sub-{notification_id}",
                    agency_id=agency_id,
                    channel=Channel.VOICE,
                    provider="twilio-voice",
                    status=status,
                    attempt=attempt,
                    at=at,
                    contact_masked="+1•••••••89",
                    case=SubjectIdentifier(kind=IdentifierKind.CASE_NUMBER, value="CR-2026-0043"),
                ),
                source="custodywatch/delivery",
            )
        )
        for status, at, attempt in steps
    ]
    delivery.add_notice(
        notification_id,
        status="delivered",
        outcome="acknowledged",
        channel="voice",
        attempts=[
            call_attempt(1, "delivered", at=placed, answered_by="machine_start"),
            call_attempt(2, "delivered", at=answered, answered_by="human", minutes=2),
        ],
        acknowledged_at=answered + timedelta(minutes=1),
    )
    return events


async def test_operator_watches_and_acts_in_a_real_browser(
    browser: Browser, browser_ops_settings: OpsSettings, kafka_settings: KafkaSettings, watched_group: str, unique: str
) -> None:
    settings = browser_ops_settings
    delivery = DeliveryStandIn()
    database_url = settings.database_url
    await ensure_topics(kafka_settings, [CUSTODY_STATUS_CHANGED, *consumer_group_topics(watched_group)])
    source = kafka_settings.topic(CUSTODY_STATUS_CHANGED.name)
    dead_event_id = await dead_letter(kafka_settings, watched_group, original=source, error="RuntimeError: db down")

    async with serving(create_app(settings, delivery_transport=delivery.transport())) as ops_url:
        # Unauthenticated: nothing but the login page.
        page = await browser.new_page()
        await log_in(page, ops_url, *ADMIN)

        # A notice just delivered appears without a reload.
        await page.evaluate("window.__stillTheSamePage = true")
        notification_id = f"n-{unique}"
        now = datetime.now(UTC)
        change = NotificationStatusChanged(
            notification_id=notification_id,
            subscription_id=f"sub-{unique}",
            agency_id=f"quiet-{unique}",
            channel=Channel.SMS,
            provider="local",
            status=DeliveryStatus.DELIVERED,
            at=now,
            contact_masked="+1•••••••67",
            case=SubjectIdentifier(kind=IdentifierKind.CASE_NUMBER, value="CR-2026-0042"),
            feed_received_at=now - timedelta(seconds=12),
        )
        event = new_event(change, source="custodywatch/delivery")
        call_id = f"call-{unique}"
        calls = voice_notice(call_id, f"quiet-{unique}", now - timedelta(hours=3), delivery)
        await produce_raw(
            kafka_settings,
            kafka_settings.topic(NOTIFICATION_STATUS_CHANGED.name),
            [(None, encode(event)), *((None, call) for call in calls)],
        )
        row = page.locator(f'tr[data-notification-id="{notification_id}"]')
        await expect(row.locator("td.status")).to_have_text("delivered", timeout=20_000)
        await expect(row).to_contain_text("+1•••••••67")
        # A call is listed like any other notice.
        call_row = page.locator(f'tr[data-notification-id="{call_id}"]')
        await expect(call_row.locator("td.status")).to_have_text("delivered", timeout=20_000)
        await expect(call_row).to_contain_text("voice")
        await expect(call_row).to_contain_text("+1•••••••89")
        await expect(page.locator("table.counts").first).to_contain_text("twilio-voice")
        assert await page.evaluate("window.__stillTheSamePage") is True

        # The quiet feed is flagged stale (red).
        stale = page.locator(f'tr.feed.stale[data-agency-id="quiet-{unique}"]')
        await expect(stale.locator(".feed-state")).to_have_text("STALE", timeout=20_000)
        assert await stale.evaluate("row => getComputedStyle(row).backgroundColor") == "rgb(255, 235, 238)"
        await expect(page.locator("#alerts")).to_contain_text("feed_stale", timeout=20_000)

        # The dead letter is listed; the whole page is saved as the test artefact.
        letter = page.locator(f'tr[data-event-id="{dead_event_id}"]')
        await expect(letter).to_contain_text("db down", timeout=20_000)
        await expect(page.locator("#lag")).to_contain_text(NOTIFICATION_STATUS_CHANGED.name, timeout=20_000)
        assert re.search(r"\+1\d{9}|@[a-z]+\.[a-z]+", await page.content()) is None
        SCREENSHOT.parent.mkdir(exist_ok=True)
        await page.screenshot(path=str(SCREENSHOT), full_page=True)

        # Replay it as admin: it reaches its original topic and the audit log says who.
        page.on("dialog", lambda dialog: dialog.accept())
        await letter.locator("button.replay").click()
        await expect(page.locator("#result")).to_contain_text("Replayed", timeout=20_000)
        records = await read_topic(
            kafka_settings, source, until=lambda rs: any(r.value and decode(r.value).id == dead_event_id for r in rs)
        )
        assert records
        await page.goto(ops_url + "/audit")
        await expect(page.locator("#audit tbody tr").first).to_contain_text("replay_dead_letter")
        await expect(page.locator("#audit tbody tr").first).to_contain_text(ADMIN[0])

        # Pause the quiet agency's notices: the real ingest service records it; the audit log says who.
        await page.goto(ops_url + "/")
        await stale.locator("button", has_text="Pause").click()
        await expect(page.locator("#result")).to_contain_text(f"Notices of quiet-{unique} paused", timeout=20_000)
        async with httpx.AsyncClient(
            base_url=settings.ingest_url, headers={"Authorization": f"Bearer {INGEST_TOKEN}"}
        ) as c:
            assert (await c.get(f"/v1/admin/agencies/quiet-{unique}")).json()["notices_paused"] is True
        await page.goto(ops_url + "/audit")
        await expect(page.locator("#audit tbody tr").first).to_contain_text("pause_notices")

        # The call's history: every attempt, how each call went, who answered, and the PIN that stopped the repeats.
        await call_row_link(page, ops_url, call_id)
        history = page.locator("#history tbody tr")
        await expect(history).to_have_count(5)
        assert await page.locator("#history tbody tr td:nth-child(5)").all_inner_texts() == ["1", "1", "2", "2", "2"]
        assert await page.locator("#history td.call-status").all_inner_texts() == [
            "queued or ringing",
            "completed",
            "queued or ringing",
            "in progress",
            "completed",
        ]
        assert await page.locator("#history td.answered-by").all_inner_texts() == [
            "—",
            "machine_start",
            "—",
            "—",
            "human",
        ]
        await expect(page.locator("#acknowledged")).to_contain_text("by PIN on call attempt 2")
        await page.screenshot(path=str(CALL_SCREENSHOT), full_page=True)

        # A viewer sees the dashboard, no replay button, and is refused when trying anyway.
        pool = await asyncpg.create_pool(database_url, min_size=1, max_size=1)
        assert pool is not None
        async with pool.acquire() as connection:
            await create_operator(connection, VIEWER[0], hash_password(VIEWER[1]), Role.VIEWER)
        await pool.close()
        viewer_context = await browser.new_context()
        viewer = await viewer_context.new_page()
        await log_in(viewer, ops_url, *VIEWER)
        await expect(viewer.locator(f'tr[data-event-id="{dead_event_id}"]')).to_contain_text("replayed by admin")
        assert await viewer.locator("button.replay").count() == 0
        csrf = await viewer.locator("input[name=csrf_token]").first.get_attribute("value")
        refused = await viewer.request.post(
            ops_url + "/actions/replay",
            form={"csrf_token": csrf or "", "topic": f"dlq.{watched_group}", "partition": "0", "offset": "0"},
            headers={"accept": "text/html"},
        )
        assert refused.status == 403
        assert "only admins" in await refused.text()
        await viewer_context.close()


async def test_admin_sees_a_held_storm_appear_and_releases_it_in_a_real_browser(
    browser: Browser, database_url: str, kafka_settings: KafkaSettings, unique: str
) -> None:
    """Ingest answers through its contract stand-in here; the lead's end-to-end tests hold a storm in the real one."""
    ingest = IngestStandIn()
    settings = OpsSettings(
        environment="test",
        database_url=database_url,
        kafka=kafka_settings,
        ingest_url="http://ingest.test",
        ingest_admin_token=STANDIN_INGEST_TOKEN,
        storm_poll_interval_seconds=0.3,
        refresh_seconds=0.5,
        consumer_groups=["ops"],
        bootstrap_admin_username=ADMIN[0],
        bootstrap_admin_password=ADMIN[1],
    )
    agency = f"jail-{unique}"
    async with serving(create_app(settings, ingest_transport=ingest.transport())) as ops_url:
        page = await browser.new_page()
        await log_in(page, ops_url, *ADMIN)
        await expect(page.locator("#storm-holds")).to_contain_text("No storm held.")

        ingest.add_hold(storm_hold("h-browser", agency, held=412))  # appears without a reload
        hold = page.locator('article.storm-hold[data-hold-id="h-browser"]')
        await expect(hold).to_contain_text("412 releases in 10 minutes", timeout=20_000)
        await expect(hold.locator(".held-changes")).to_have_text("412")
        await expect(hold.locator("table.samples tbody tr")).to_have_count(3)
        await expect(hold).to_contain_text("SAMPLE, PERSON 0")
        await screenshot_live(hold, STORM_SCREENSHOT)

        page.on("dialog", lambda dialog: dialog.accept())
        await hold.locator("button.release").click()
        await expect(page.locator("#result")).to_contain_text("Released storm hold h-browser", timeout=20_000)
        assert [sent.body for sent in ingest.sent("POST", "/v1/admin/storm-holds/h-browser/release")] == [
            {"operator": ADMIN[0]}
        ]
        await page.locator("#back").click()
        decided = page.locator('#decided-storms tr[data-hold-id="h-browser"]')
        await expect(decided.locator(".state")).to_have_text("released")
        await expect(decided).to_contain_text(ADMIN[0])
        assert await page.locator("article.storm-hold").count() == 0
