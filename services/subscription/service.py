"""The subscription use cases: each one parses with the domain, changes state in one transaction, and writes the
events describing the change to the outbox in that same transaction."""

from __future__ import annotations

import asyncio
import logging
import secrets
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

import asyncpg

from services.subscription import store
from services.subscription.domain import sms
from services.subscription.domain.contacts import (
    email_index_form,
    normalise_email,
    normalise_phone,
    normalise_voice_number,
)
from services.subscription.domain.errors import (
    ConflictError,
    ForbiddenError,
    GoneError,
    InvalidContactError,
    InvalidRequestError,
    NotFoundError,
    TooManyRequestsError,
    UnauthorizedError,
)
from services.subscription.domain.names import MAX_RESULTS as MAX_NAME_RESULTS
from services.subscription.domain.names import RELEASED_WITHIN, name_words
from services.subscription.domain.pin import clean_pin, hash_pin
from services.subscription.domain.ratelimit import Limit, retry_after, window_start
from services.subscription.domain.subscription import (
    Contact,
    Subscription,
    add_contact,
    cancel,
    change_preferences,
    disable_contact,
    mark_verified,
    normalise_event_types,
    reencrypted,
    remove_contact,
    renew_link,
    require_open,
    resume_sms,
    stop_phone,
    unsubscribe_email,
    validate_timezone,
)
from services.subscription.domain.tokens import ExpiredTokenError, InvalidTokenError, SubscriptionClaim, Tokens
from services.subscription.domain.verification import (
    CodeCheck,
    check_code,
    clean_code,
    generate_code,
    hash_code,
    problem_for,
    resend_wait,
    verification_notification_id,
)
from services.subscription.metrics import CODES_ISSUED, SMS_KEYWORDS, SUBSCRIPTIONS_CHANGED, VERIFY_ATTEMPTS
from services.subscription.rendering import default_renderer
from services.subscription.settings import SubscriptionSettings
from shared.crypto import mask_email, mask_phone
from shared.db import Connection
from shared.events import (
    NoticeAcknowledged,
    NotificationKind,
    NotificationRequested,
    SubjectIdentifier,
    SubscriptionChange,
    event_source,
    new_event,
)
from shared.outbox import enqueue
from shared.topics import NOTIFICATION_ACKNOWLEDGED, NOTIFICATION_REQUESTED, SUBSCRIPTION_STATE
from shared.vocabulary import Channel, CustodyStatus, Language, Urgency, normalise_identifier

log = logging.getLogger(__name__)

SOURCE = event_source("subscription")
ACK_NAMESPACE = uuid.UUID("a7d1c3e5-2b4f-4a6c-8e0d-9f1b3d5c7e9a")
CHANGE_NAMESPACE = uuid.UUID("3f6b8d2a-71c4-4e95-a0d3-5b7e9c1f2a48")
INBOUND_SMS_PATH = "/v1/sms/inbound"


@dataclass(frozen=True)
class NewSubscription:
    agency_id: str
    identifier: SubjectIdentifier
    sms: str | None
    email: str | None
    language: Language
    timezone: str
    event_types: list[CustodyStatus] | None
    quiet_hours: tuple[time, time] | None
    voice: str | None = None
    pin: str | None = None


@dataclass(frozen=True)
class Preferences:
    language: Language | None = None
    timezone: str | None = None
    event_types: list[CustodyStatus] | None = None
    quiet_hours: tuple[time, time] | None = None


@dataclass(frozen=True)
class Created:
    subscription: Subscription
    manage_url: str


class SubscriptionService:
    def __init__(
        self,
        settings: SubscriptionSettings,
        pool: Callable[[], asyncpg.Pool],
        *,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.settings = settings
        self._pool = pool
        self.cipher = settings.contact_cipher()
        self.tokens = Tokens(settings.token_secret)
        self.renderer = default_renderer()
        self._now = clock or (lambda: datetime.now(UTC))
        self._base_url = settings.public_base_url.rstrip("/")
        kafka = settings.kafka
        self._state_topic = kafka.topic(SUBSCRIPTION_STATE.name)
        self._notification_topic = kafka.topic(NOTIFICATION_REQUESTED.name)
        self._ack_topic = kafka.topic(NOTIFICATION_ACKNOWLEDGED.name)

    @property
    def pool(self) -> asyncpg.Pool:
        return self._pool()

    # --- rate limits -------------------------------------------------------------------------------------------

    async def limit(self, limit: Limit, who: str) -> None:
        """Count a request against ``limit`` for ``who``; 429 once over. Committed on its own, so a request that
        fails later still counts (otherwise failures would be free to repeat)."""
        now = self._now()
        bucket = self.cipher.blind_index(f"rate-limit:{limit.name}:{who}")
        async with self.pool.acquire() as connection:
            hits = await store.count_hit(connection, bucket, window_start(now, limit.window))
        if hits > limit.max_hits:
            log.warning("rate limit %s exceeded", limit.name)
            raise TooManyRequestsError(
                "too many requests: please wait and try again", retry_after=retry_after(now, limit.window)
            )

    async def prune_forever(self, every_seconds: float = 600.0) -> None:
        """Forget finished rate-limit windows and old inbound message ids (replays come within minutes)."""
        while True:
            now = self._now()
            async with self.pool.acquire() as connection:
                await store.forget_old_windows(connection, now - timedelta(days=2))
                await store.forget_inbound_sms(connection, now - timedelta(days=7))
            await asyncio.sleep(every_seconds)

    def client_limits(self) -> dict[str, Limit]:
        s = self.settings
        return {
            "subscribe": Limit("subscribe-client", s.subscribe_limit_per_client_per_hour, timedelta(hours=1)),
            "lookup": Limit("lookup-client", s.lookup_limit_per_client_per_minute, timedelta(minutes=1)),
            "verify": Limit("verify-client", s.verify_limit_per_client_per_hour, timedelta(hours=1)),
            "manage": Limit("manage-client", s.manage_limit_per_client_per_minute, timedelta(minutes=1)),
        }

    # --- subscribe ---------------------------------------------------------------------------------------------

    async def subscribe(self, request: NewSubscription, client: str) -> Created:
        await self.limit(self.client_limits()["subscribe"], client)
        if request.sms is None and request.email is None and request.voice is None:
            raise InvalidRequestError(
                "give a mobile number (sms), an email address, or both; or a number to call (voice)"
            )
        pin = self._voice_pin(request)
        timezone = validate_timezone(request.timezone)
        event_types = normalise_event_types(request.event_types)
        identifier = SubjectIdentifier(
            kind=request.identifier.kind, value=normalise_identifier(request.identifier.value)
        )
        contacts = [
            (channel, *self._normalised_contact(channel, raw))
            for channel, raw in (
                (Channel.SMS, request.sms),
                (Channel.EMAIL, request.email),
                (Channel.VOICE, request.voice),
            )
            if raw is not None
        ]
        async with self.pool.acquire() as connection:
            await self._require_agency(connection, request.agency_id)
        for _, _, index_form in contacts:
            await self.limit(self._contact_limit(), self.cipher.blind_index(index_form))

        now = self._now()
        quiet_start, quiet_end = request.quiet_hours or (time(21, 0), time(7, 0))
        subscription_id = str(uuid.uuid4())
        pin_hash = hash_pin(self.settings.blind_index_key, subscription_id, pin) if pin else None
        subscription = Subscription(
            subscription_id=subscription_id,
            agency_id=request.agency_id,
            identifier=identifier,
            status="pending",
            contacts=tuple(
                self._new_contact(channel, value, index_form, pin_hash=pin_hash if channel is Channel.VOICE else None)
                for channel, value, index_form in contacts
            ),
            language=request.language,
            timezone=timezone,
            event_types=tuple(event_types),
            quiet_hours_start=quiet_start,
            quiet_hours_end=quiet_end,
            manage_nonce=secrets.token_urlsafe(16),
            version=1,
            created_at=now,
            updated_at=now,
        )
        async with self.pool.acquire() as connection, connection.transaction():
            await store.insert_subscription(connection, subscription)
            for contact in subscription.contacts:
                await self._issue_code(connection, subscription, contact.channel, now)
            await self._publish_state(connection, subscription)
        SUBSCRIPTIONS_CHANGED.labels("created").inc()
        log.info(
            "subscription created",
            extra={
                "subscription_id": subscription.subscription_id,
                "agency_id": subscription.agency_id,
                "channels": [c.channel.value for c in subscription.contacts],
            },
        )
        return Created(subscription, self.manage_url(subscription))

    def _normalised_contact(self, channel: Channel, raw: str) -> tuple[str, str]:
        """The contact as stored and the form its blind index is computed from."""
        if channel is Channel.SMS:
            phone = normalise_phone(raw, self.settings.default_phone_region)
            return phone, phone
        if channel is Channel.VOICE:
            number = normalise_voice_number(raw, self.settings.default_phone_region)
            return number, number
        address = normalise_email(raw)
        return address, email_index_form(address)

    def _new_contact(self, channel: Channel, value: str, index_form: str, *, pin_hash: str | None = None) -> Contact:
        return Contact(
            channel=channel,
            ciphertext=self.cipher.encrypt(value),
            masked=mask_email(value) if channel is Channel.EMAIL else mask_phone(value),
            blind_index=self.cipher.blind_index(index_form),
            pin_hash=pin_hash,
        )

    @staticmethod
    def _voice_pin(request: NewSubscription) -> str | None:
        """The PIN a voice number needs (checked against easy guesses); none without a voice number."""
        if request.voice is None:
            if request.pin is not None:
                raise InvalidRequestError("a PIN is only for voice calls: give a number to call (voice) too")
            return None
        if request.pin is None:
            raise InvalidRequestError("choose a 4-digit PIN for voice calls: you key it in to confirm a call")
        return clean_pin(request.pin)

    def _contact_limit(self) -> Limit:
        return Limit("subscribe-contact", self.settings.subscribe_limit_per_contact_per_day, timedelta(days=1))

    async def agencies(self) -> list[store.Agency]:
        """The agencies taking subscriptions, by name (for the portal's list)."""
        async with self.pool.acquire() as connection:
            return await store.active_agencies(connection)

    async def agency(self, agency_id: str) -> store.Agency:
        async with self.pool.acquire() as connection:
            agency = await store.get_agency(connection, agency_id)
        if agency is None:
            raise NotFoundError(f"unknown agency {agency_id[:64]!r}: check the agency id")
        return agency

    async def _require_agency(self, connection: Connection, agency_id: str) -> None:
        agency = await store.get_agency(connection, agency_id)
        if agency is None:
            raise NotFoundError(f"unknown agency {agency_id[:64]!r}: check the agency id")
        if not agency.active:
            raise ConflictError(f"{agency.name} does not take subscriptions at the moment")

    # --- verification ------------------------------------------------------------------------------------------

    async def _issue_code(
        self, connection: Connection, subscription: Subscription, channel: Channel, now: datetime
    ) -> None:
        contact = subscription.contact(channel)
        issue = await store.next_code_issue(connection, subscription.subscription_id, channel)
        code = generate_code()
        ttl = timedelta(seconds=self.settings.verification_code_ttl_seconds)
        await store.insert_code(
            connection,
            subscription_id=subscription.subscription_id,
            channel=channel,
            issue=issue,
            code_hash=hash_code(self.settings.token_secret, subscription.subscription_id, channel, issue, code),
            created_at=now,
            expires_at=now + ttl,
        )
        verify_url = None
        if channel is Channel.EMAIL:
            token = self.tokens.verify(subscription.subscription_id, issue)
            verify_url = f"{self._base_url}/v1/verify?token={token}"
        await self._request_notice(
            connection,
            subscription,
            contact,
            kind=NotificationKind.VERIFICATION,
            notification_id=verification_notification_id(subscription.subscription_id, channel, issue),
            now=now,
            # Someone is waiting for this code right now: quiet hours must not hold it.
            urgency=Urgency.URGENT,
            secret_ciphertext=self.cipher.encrypt(code),
            verify_url_ciphertext=self.cipher.encrypt(verify_url) if verify_url else None,
        )
        CODES_ISSUED.labels(channel.value).inc()

    async def _request_notice(
        self,
        connection: Connection,
        subscription: Subscription,
        contact: Contact,
        *,
        kind: NotificationKind,
        notification_id: str,
        now: datetime,
        **fields: object,
    ) -> None:
        notice = NotificationRequested.model_validate(
            {
                "notification_id": notification_id,
                "kind": kind,
                "subscription_id": subscription.subscription_id,
                "agency_id": subscription.agency_id,
                "channel": contact.channel,
                "contact_ciphertext": contact.ciphertext,
                "contact_masked": contact.masked,
                "language": subscription.language,
                "timezone": subscription.timezone,
                "urgency": Urgency.INFORMATIONAL,
                "quiet_hours_start": subscription.quiet_hours_start,
                "quiet_hours_end": subscription.quiet_hours_end,
                "manage_url_ciphertext": self.cipher.encrypt(self.manage_url(subscription)),
                "unsubscribe_url_ciphertext": self.cipher.encrypt(self.unsubscribe_url(subscription)),
                "requested_at": now,
                **fields,
            }
        )
        event = new_event(notice, source=SOURCE, subject=subscription.subscription_id, event_id=notification_id)
        await enqueue(connection, self._notification_topic, notification_id, event)

    async def _announce(
        self, connection: Connection, subscription: Subscription, change: SubscriptionChange, now: datetime
    ) -> None:
        """Tell every verified, working contact point what was done, so a stranger holding the link is noticed."""
        for contact in subscription.contacts:
            if contact.verified and contact.active:
                notification_id = str(
                    uuid.uuid5(
                        CHANGE_NAMESPACE, f"{subscription.subscription_id}:{subscription.version}:{contact.channel}"
                    )
                )
                await self._request_notice(
                    connection,
                    subscription,
                    contact,
                    kind=NotificationKind.SUBSCRIPTION_CHANGED,
                    notification_id=notification_id,
                    now=now,
                    change=change,
                )

    async def verify_code(
        self, subscription_id: str, bearer: str | None, channel: Channel, raw_code: str, client: str
    ) -> Subscription:
        await self.limit(self.client_limits()["verify"], client)
        await self._authorize(subscription_id, bearer)
        code = clean_code(raw_code)
        now = self._now()
        async with self.pool.acquire() as connection, connection.transaction():
            subscription = await self._load(connection, subscription_id)
            require_open(subscription)
            if subscription.contact(channel).verified:
                raise ConflictError(f"the {channel.value} contact is already verified")
            challenge = await store.latest_code(connection, subscription_id, channel)
            if challenge is None:
                raise NotFoundError("no code was sent to this contact: request a new code")
            outcome = check_code(
                challenge,
                hash_code(self.settings.token_secret, subscription_id, channel, challenge.issue, code),
                now,
                self.settings.verification_max_attempts,
            )
            VERIFY_ATTEMPTS.labels(outcome.value).inc()
            if outcome in (CodeCheck.VERIFIED, CodeCheck.WRONG):
                await store.record_attempt(connection, subscription_id, channel, challenge.issue)
            if outcome is CodeCheck.VERIFIED:
                await store.consume_code(connection, subscription_id, channel, challenge.issue, now)
                verified = mark_verified(subscription, channel, now)
                await store.update_subscription(connection, verified)
                await self._publish_state(connection, verified)
        if outcome is not CodeCheck.VERIFIED:
            # The attempt is committed (it counts); the subscription itself is unchanged.
            log.info("verification failed", extra={"subscription_id": subscription_id, "outcome": outcome.value})
            raise problem_for(outcome, self.settings.verification_max_attempts - challenge.attempts - 1)
        SUBSCRIPTIONS_CHANGED.labels("verified").inc()
        log.info("contact verified", extra={"subscription_id": subscription_id, "channel": channel.value})
        return verified

    async def verify_link(self, token: str) -> Subscription:
        try:
            claim = self.tokens.read_verify(token, self.settings.verification_code_ttl_seconds)
        except ExpiredTokenError:
            raise GoneError("this link has expired: request a new code from your manage page") from None
        except InvalidTokenError:
            raise NotFoundError("this verification link is not valid") from None
        now = self._now()
        async with self.pool.acquire() as connection, connection.transaction():
            subscription = await store.load_subscription(connection, claim.subscription_id, for_update=True)
            if subscription is None or not subscription.has(Channel.EMAIL):
                raise NotFoundError("this verification link is not valid")
            require_open(subscription)
            if subscription.contact(Channel.EMAIL).verified:
                raise ConflictError("this email address is already verified")
            challenge = await store.latest_code(connection, claim.subscription_id, Channel.EMAIL)
            if challenge is None or challenge.issue != claim.issue:
                raise GoneError("a newer code was sent: use the newest message")
            if challenge.consumed_at is not None:
                raise ConflictError("this link was already used")
            if now >= challenge.expires_at:
                raise GoneError("this link has expired: request a new code from your manage page")
            await store.consume_code(connection, claim.subscription_id, Channel.EMAIL, challenge.issue, now)
            verified = mark_verified(subscription, Channel.EMAIL, now)
            await store.update_subscription(connection, verified)
            await self._publish_state(connection, verified)
        SUBSCRIPTIONS_CHANGED.labels("verified").inc()
        log.info("email verified by link", extra={"subscription_id": claim.subscription_id})
        return verified

    async def resend(self, subscription_id: str, bearer: str | None, channel: Channel, client: str) -> Subscription:
        await self.limit(self.client_limits()["verify"], client)
        await self._authorize(subscription_id, bearer)
        now = self._now()
        async with self.pool.acquire() as connection, connection.transaction():
            subscription = await self._load(connection, subscription_id)
            require_open(subscription)
            contact = subscription.contact(channel)
            if contact.verified:
                raise ConflictError(f"the {channel.value} contact is already verified")
            if not contact.active:
                raise ConflictError(f"the {channel.value} contact is switched off; no code can be sent to it")
            issued = await store.code_issue_times(connection, subscription_id, channel, now - timedelta(hours=1))
            wait = resend_wait(
                issued,
                now,
                min_interval_seconds=self.settings.resend_min_interval_seconds,
                max_per_hour=self.settings.resend_max_per_hour,
            )
            if wait is not None:
                raise TooManyRequestsError(
                    f"a code was sent recently: you can ask for a new one in {wait} s", retry_after=wait
                )
            await self._issue_code(connection, subscription, channel, now)
        log.info("verification code resent", extra={"subscription_id": subscription_id, "channel": channel.value})
        return subscription

    # --- manage ------------------------------------------------------------------------------------------------

    def manage_url(self, subscription: Subscription) -> str:
        return (
            f"{self._base_url}/v1/manage/{self.tokens.manage(subscription.subscription_id, subscription.manage_nonce)}"
        )

    def unsubscribe_url(self, subscription: Subscription) -> str:
        token = self.tokens.unsubscribe(subscription.subscription_id, subscription.manage_nonce)
        return f"{self._base_url}/v1/unsubscribe/{token}"

    async def _authorize(self, subscription_id: str, bearer: str | None) -> None:
        if not bearer:
            raise UnauthorizedError("send the token of your manage link as a bearer token")
        try:
            claim = self.tokens.read_manage(bearer)
        except InvalidTokenError:
            raise ForbiddenError("this token is not valid for this subscription") from None
        if claim.subscription_id != subscription_id:
            raise ForbiddenError("this token is not valid for this subscription")
        async with self.pool.acquire() as connection:
            await self._claimed(
                connection,
                claim,
                for_update=False,
                problem=ForbiddenError("this token is not valid for this subscription"),
            )

    async def _claimed(
        self, connection: Connection, claim: SubscriptionClaim, *, for_update: bool, problem: Exception
    ) -> Subscription:
        subscription = await store.load_subscription(connection, claim.subscription_id, for_update=for_update)
        if subscription is None or not secrets.compare_digest(subscription.manage_nonce, claim.nonce):
            raise problem
        return subscription

    async def _load(self, connection: Connection, subscription_id: str) -> Subscription:
        subscription = await store.load_subscription(connection, subscription_id, for_update=True)
        if subscription is None:
            raise NotFoundError("no such subscription")
        return subscription

    def _read_manage(self, token: str) -> SubscriptionClaim:
        try:
            return self.tokens.read_manage(token)
        except InvalidTokenError:
            raise NotFoundError("this manage link is not valid") from None

    async def manage_view(self, token: str, client: str) -> Subscription:
        await self.limit(self.client_limits()["manage"], client)
        claim = self._read_manage(token)
        async with self.pool.acquire() as connection:
            return await self._claimed(
                connection, claim, for_update=False, problem=NotFoundError("this manage link is not valid")
            )

    async def manage_update(self, token: str, preferences: Preferences, client: str) -> Subscription:
        await self.limit(self.client_limits()["manage"], client)
        now = self._now()
        return await self._change_claimed(
            self._read_manage(token),
            "this manage link is not valid",
            lambda subscription: change_preferences(
                subscription,
                now,
                language=preferences.language,
                timezone=preferences.timezone,
                event_types=preferences.event_types,
                quiet_hours=preferences.quiet_hours,
            ),
            outcome="changed",
            message="subscription changed",
            announce=SubscriptionChange.PREFERENCES,
        )

    async def manage_cancel(self, token: str, client: str) -> Subscription:
        await self.limit(self.client_limits()["manage"], client)
        now = self._now()
        return await self._change_claimed(
            self._read_manage(token),
            "this manage link is not valid",
            lambda subscription: cancel(subscription, now),
            outcome="cancelled",
            message="subscription cancelled",
            announce=SubscriptionChange.CANCELLED,
        )

    async def renew_manage_link(self, token: str, client: str) -> Subscription:
        """ "Send me a new link": a new nonce (old manage and unsubscribe links stop working), sent to the verified
        contacts only, never shown to whoever asked (who may hold a leaked link)."""
        await self.limit(self.client_limits()["manage"], client)
        now = self._now()
        return await self._change_claimed(
            self._read_manage(token),
            "this manage link is not valid",
            lambda subscription: renew_link(subscription, secrets.token_urlsafe(16), now),
            outcome="link_renewed",
            message="manage link renewed",
            announce=SubscriptionChange.NEW_LINK,
        )

    async def add_contact(self, token: str, channel: Channel, raw: str, client: str) -> Subscription:
        """Add a phone or email; it is sent a code and gets nothing else until verified."""
        await self.limit(self.client_limits()["manage"], client)
        value, index_form = self._normalised_contact(channel, raw)
        await self.limit(self._contact_limit(), self.cipher.blind_index(index_form))
        now = self._now()
        contact = self._new_contact(channel, value, index_form)

        async def send_code(connection: Connection, changed: Subscription) -> None:
            await self._issue_code(connection, changed, channel, now)

        return await self._change_claimed(
            self._read_manage(token),
            "this manage link is not valid",
            lambda subscription: add_contact(subscription, contact, now),
            outcome="contact_added",
            message="contact added",
            announce=SubscriptionChange.CONTACT_ADDED,
            then=send_code,
        )

    async def remove_contact(self, token: str, channel: Channel, client: str) -> Subscription:
        await self.limit(self.client_limits()["manage"], client)
        now = self._now()
        return await self._change_claimed(
            self._read_manage(token),
            "this manage link is not valid",
            lambda subscription: remove_contact(subscription, channel, now),
            outcome="contact_removed",
            message="contact removed",
            announce=SubscriptionChange.CONTACT_REMOVED,
        )

    async def _change_claimed(
        self,
        claim: SubscriptionClaim,
        invalid_link: str,
        change: Callable[[Subscription], Subscription | None],
        *,
        outcome: str,
        message: str,
        announce: SubscriptionChange | None = None,
        then: Callable[[Connection, Subscription], Awaitable[None]] | None = None,
    ) -> Subscription:
        """Apply a link holder's change to their subscription and publish it; unchanged, it is returned as it was.
        ``announce`` tells the subscriber's verified contacts; ``then`` runs in the same transaction."""
        now = self._now()
        async with self.pool.acquire() as connection, connection.transaction():
            subscription = await self._claimed(connection, claim, for_update=True, problem=NotFoundError(invalid_link))
            changed = change(subscription)
            if changed is None:
                return subscription
            await store.update_subscription(connection, changed)
            await self._publish_state(connection, changed)
            if announce is not None:
                await self._announce(connection, changed, announce, now)
            if then is not None:
                await then(connection, changed)
        SUBSCRIPTIONS_CHANGED.labels(outcome).inc()
        log.info(message, extra={"subscription_id": changed.subscription_id})
        return changed

    # --- one-click unsubscribe (RFC 8058) ----------------------------------------------------------------------

    async def check_unsubscribe_token(self, token: str) -> Subscription:
        claim = self._read_unsubscribe(token)
        async with self.pool.acquire() as connection:
            return await self._claimed(
                connection, claim, for_update=False, problem=NotFoundError("this unsubscribe link is not valid")
            )

    def _read_unsubscribe(self, token: str) -> SubscriptionClaim:
        try:
            return self.tokens.read_unsubscribe(token)
        except InvalidTokenError:
            raise NotFoundError("this unsubscribe link is not valid") from None

    async def unsubscribe_email(self, token: str) -> Subscription:
        now = self._now()
        return await self._change_claimed(
            self._read_unsubscribe(token),
            "this unsubscribe link is not valid",
            lambda subscription: unsubscribe_email(subscription, now),
            outcome="email_unsubscribed",
            message="email unsubscribed (one-click)",
        )

    # --- inbound SMS -------------------------------------------------------------------------------------------

    async def inbound_sms(self, params: Mapping[str, str]) -> str:
        """Handle one inbound message whose Twilio signature was checked; returns the TwiML answer."""
        message_sid, sender = params.get("MessageSid", ""), params.get("From", "")
        if not message_sid or not sender:
            raise InvalidRequestError("From and MessageSid are required")
        keyword = sms.classify(params.get("Body", ""))
        SMS_KEYWORDS.labels(keyword.value).inc()
        try:
            phone: str | None = normalise_phone(sender, self.settings.default_phone_region)
        except InvalidContactError:
            phone = None
        now = self._now()
        language = Language.ENGLISH
        async with self.pool.acquire() as connection, connection.transaction():
            if not await store.claim_inbound_sms(connection, message_sid, keyword.value):
                raise ConflictError("this message was already processed")
            index = self.cipher.blind_index(phone) if phone is not None else None
            ids = [] if index is None else await store.subscription_ids_by_contact(connection, Channel.SMS, index)
            if index is not None and keyword is sms.Keyword.STOP:  # calls to the number end too
                voice_ids = await store.subscription_ids_by_contact(connection, Channel.VOICE, index)
                ids = sorted({*ids, *voice_ids})
            changed_count = 0
            for subscription_id in ids:
                subscription = await self._load(connection, subscription_id)
                if subscription_id == ids[0]:
                    language = subscription.language
                changed_count += await self._apply_keyword(
                    connection, subscription, keyword, message_sid, now=now, sender_index=index or ""
                )
        log.info(
            "inbound SMS handled",
            extra={"keyword": keyword.value, "message_sid": message_sid, "subscriptions_changed": changed_count},
        )
        # The same answer whether or not the number has subscriptions: a reply reveals nothing.
        return sms.twiml(
            self.renderer.sms_reply(
                keyword.value,
                language,
                service_name=self.settings.service_display_name,
                help_url=self.settings.help_url,
            )
        )

    async def _apply_keyword(
        self,
        connection: Connection,
        subscription: Subscription,
        keyword: sms.Keyword,
        message_sid: str,
        *,
        now: datetime,
        sender_index: str,
    ) -> int:
        if keyword is sms.Keyword.ACKNOWLEDGE:
            contact = subscription.contact(Channel.SMS)
            if subscription.status != "active" or not (contact.active and contact.verified):
                return 0
            ack = NoticeAcknowledged(subscription_id=subscription.subscription_id, channel=Channel.SMS, at=now)
            event_id = str(uuid.uuid5(ACK_NAMESPACE, f"{message_sid}:{subscription.subscription_id}"))
            event = new_event(ack, source=SOURCE, subject=subscription.subscription_id, event_id=event_id)
            await enqueue(connection, self._ack_topic, subscription.subscription_id, event)
            return 0
        if keyword is sms.Keyword.STOP:
            changed = stop_phone(subscription, sender_index, now)
        elif keyword is sms.Keyword.START:
            changed = resume_sms(subscription, now)
        else:
            return 0
        if changed is None:
            return 0
        await store.update_subscription(connection, changed)
        await self._publish_state(connection, changed)
        SUBSCRIPTIONS_CHANGED.labels(f"sms_{keyword.value}").inc()
        return 1

    # --- contact disabled by delivery --------------------------------------------------------------------------

    async def disable_contact(
        self, connection: Connection, subscription_id: str, channel: Channel, reason: str, now: datetime
    ) -> None:
        subscription = await store.load_subscription(connection, subscription_id, for_update=True)
        if subscription is None:
            log.warning(
                "contact-point.disabled for an unknown subscription", extra={"subscription_id": subscription_id}
            )
            return
        changed = disable_contact(subscription, channel, "opted_out" if reason == "opted_out" else "hard_bounce", now)
        if changed is None:
            return
        await store.update_subscription(connection, changed)
        await self._publish_state(connection, changed)
        SUBSCRIPTIONS_CHANGED.labels("contact_disabled").inc()
        log.info(
            "contact disabled", extra={"subscription_id": subscription_id, "channel": channel.value, "reason": reason}
        )

    # --- lookup ------------------------------------------------------------------------------------------------

    async def lookup(self, agency_id: str, identifier: SubjectIdentifier, client: str) -> store.CustodyView:
        await self.limit(self.client_limits()["lookup"], client)
        normalised = SubjectIdentifier(kind=identifier.kind, value=normalise_identifier(identifier.value))
        async with self.pool.acquire() as connection:
            if await store.get_agency(connection, agency_id) is None:
                raise NotFoundError(f"unknown agency {agency_id[:64]!r}: check the agency id")
            view = await store.custody_status(connection, agency_id, normalised)
        if view is None:
            raise NotFoundError("no custody information for this case")
        return view

    async def search_by_name(
        self, agency_id: str, last_name: str, first_name: str, client: str, birth_date: date | None = None
    ) -> list[store.NameMatch]:
        """People an agency that allows it holds now or released in the last 30 days, by last name and first name
        or date of birth (or both); never a sealed one; at most ten; the same rate limit as the lookup."""
        await self.limit(self.client_limits()["lookup"], client)
        last, first = name_words(last_name), name_words(first_name)
        if not last or not (first or birth_date):
            raise InvalidRequestError("give a last name, and a first name or a date of birth")
        async with self.pool.acquire() as connection:
            agency = await store.get_agency(connection, agency_id)
            if agency is None or not agency.public_name_search:
                raise NotFoundError("this agency does not offer a search by name")
            released_since = self._now() - RELEASED_WITHIN
            return await store.people_named(
                connection, agency_id, sorted({*last, *first}), released_since, MAX_NAME_RESULTS, birth_date=birth_date
            )

    # --- key rotation ------------------------------------------------------------------------------------------

    async def rotate_contact_keys(self, batch_size: int = 200) -> int:
        """Re-encrypt every subscription's contact points with the newest key and publish the new state; returns
        how many subscriptions were rewritten. Keep the old key configured until this has run."""
        rotated = 0
        after = ""
        while True:
            async with self.pool.acquire() as connection:
                ids = await store.subscription_ids_after(connection, after, batch_size)
            for subscription_id in ids:
                async with self.pool.acquire() as connection, connection.transaction():
                    subscription = await self._load(connection, subscription_id)
                    changed = reencrypted(subscription, self.cipher.rotate, self._now())
                    await store.update_subscription(connection, changed)
                    await self._publish_state(connection, changed)
                rotated += 1
            if len(ids) < batch_size:
                log.info("contact keys rotated", extra={"subscriptions": rotated})
                return rotated
            after = ids[-1]

    # --- events ------------------------------------------------------------------------------------------------

    async def _publish_state(self, connection: Connection, subscription: Subscription) -> None:
        state = subscription.to_state(
            manage_url_ciphertext=self.cipher.encrypt(self.manage_url(subscription)),
            unsubscribe_url_ciphertext=self.cipher.encrypt(self.unsubscribe_url(subscription)),
        )
        event = new_event(
            state, source=SOURCE, subject=subscription.subscription_id, event_id=subscription.state_event_id()
        )
        await enqueue(connection, self._state_topic, subscription.subscription_id, event)
