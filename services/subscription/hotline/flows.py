"""The hotline's use cases: each webhook request reads the keys pressed with the pure menu (domain.py), looks up
what it needs (agencies, the case's status through the portal's own lookup, the agency's contacts), registers
the caller's phone for calls and stops them (with the registration's PIN)."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from zoneinfo import ZoneInfo

from services.subscription.domain.agency import Agency
from services.subscription.domain.case import CustodyView
from services.subscription.domain.contacts import normalise_voice_number
from services.subscription.domain.errors import InvalidContactError, NotFoundError, TooManyRequestsError
from services.subscription.domain.pin import hash_pin, pin_matches
from services.subscription.domain.ratelimit import Limit
from services.subscription.domain.subscription import ALL_EVENT_TYPES, new_subscription, unsubscribe
from services.subscription.flows import lookup
from services.subscription.flows.claims import load_for_update
from services.subscription.flows.context import Context
from services.subscription.flows.limits import contact_limit, count
from services.subscription.flows.outbox import publish_state
from services.subscription.flows.subscribe import DEFAULT_QUIET_HOURS, new_contact
from services.subscription.hotline import domain
from services.subscription.hotline import store as hotline_store
from services.subscription.hotline.domain import CallState, Line, MenuChoice, Pressed, Reply, Step
from services.subscription.hotline.settings import HotlineSettings
from services.subscription.metrics import SUBSCRIPTIONS_CHANGED
from services.subscription.store.subscriptions import insert_subscription, update_subscription
from shared.events import AgencyResources, SubjectIdentifier
from shared.vocabulary import Channel, ContactRole, IdentifierKind

log = logging.getLogger(__name__)

CONNECT_ROLES = (ContactRole.HOTLINE, ContactRole.VICTIM_ADVOCATE)
"""Whom 0 connects a caller to when the agency's profile names no victim-services line: its hotline contact, else
its victim advocate."""


@dataclass(frozen=True)
class Caller:
    """The keys pressed, the number calling (a contact: never logged) and the call."""

    keys: str
    number: str
    call_sid: str


class Hotline:
    def __init__(self, context: Context, settings: HotlineSettings) -> None:
        self._context = context
        self._call_limit = Limit("hotline-caller", settings.calls_per_caller_per_hour, timedelta(hours=1))
        self._stop_pin_limit = Limit("hotline-stop-pin", settings.stop_pins_per_number_per_day, timedelta(days=1))

    async def incoming(self, caller: str) -> Reply:
        """A new call: counted against the caller number's limit (refused politely over it), then the greeting."""
        try:
            await count(self._context, self._call_limit, f"hotline:{caller}")
        except TooManyRequestsError:
            return domain.refused("too_many_calls")
        return domain.greeting()

    async def answer(self, state: CallState, digits: str, caller: str, call_sid: str) -> Reply:
        """The keys pressed at ``state``'s question (none after its timeout)."""
        pressed, keys = domain.read_keys(state.step, digits)
        if pressed is Pressed.NOTHING:
            reply = domain.silence(state)
        elif pressed is Pressed.BACK:
            reply = domain.back(state)
        elif pressed is Pressed.WRONG:
            reply = domain.wrong_key(state)
        else:
            try:
                reply = await self._choose(state, keys, caller, call_sid)
            except TooManyRequestsError:
                reply = domain.refused("too_many_calls")
        return await self._with_choices(reply)

    async def _choose(self, state: CallState, keys: str, caller: str, call_sid: str) -> Reply:
        handlers: dict[Step, Callable[[CallState, Caller], Awaitable[Reply]]] = {
            Step.LANGUAGE: self._language,
            Step.AGENCY: self._agency,
            Step.PICK_AGENCY: self._pick_agency,
            Step.CASE: self._status,
            Step.MENU: self._menu,
            Step.PIN: self._pin,
            Step.PIN_AGAIN: self._pin_again,
            Step.STOP_PIN: self._stop_calls,
        }
        return await handlers[state.step](state, Caller(keys, caller, call_sid))

    async def _language(self, state: CallState, caller: Caller) -> Reply:
        return Reply(ask=state.at(Step.AGENCY, language=domain.language_of(caller.keys)))

    async def _pin(self, state: CallState, caller: Caller) -> Reply:
        refusal = domain.pin_refusal(caller.keys)
        if refusal is not None:
            return domain.wrong_key(state, refusal)
        return Reply(ask=state.at(Step.PIN_AGAIN, pin_check=self._pin_check(caller.call_sid, caller.keys)))

    async def _pin_again(self, state: CallState, caller: Caller) -> Reply:
        key = self._context.settings.blind_index_key
        if state.pin_check is None or not pin_matches(key, caller.call_sid, caller.keys, state.pin_check):
            return Reply(said=(Line("pin_mismatch"),), ask=state.at(Step.PIN, pin_check=None))
        return await self._register(state, caller.number, caller.keys)

    def _pin_check(self, call_sid: str, pin: str) -> str:
        """The first PIN entry, keyed and bound to this call, for the query string (the PIN itself never is)."""
        return hash_pin(self._context.settings.blind_index_key, call_sid, pin)

    # --- the agency -------------------------------------------------------------------------------------------

    async def _agencies_with_code(self, code: str) -> list[Agency]:
        agencies = await lookup.active_agencies(self._context)
        return [agency for agency in agencies if domain.agency_code(agency.agency_id) == code][: domain.MAX_PICK]

    async def _agency(self, state: CallState, caller: Caller) -> Reply:
        keys = caller.keys
        if keys == domain.LIST_AGENCIES:
            agencies = await lookup.active_agencies(self._context)
            listed = tuple(
                Line("agency_entry", {"name": agency.name, "code": domain.spell(domain.agency_code(agency.agency_id))})
                for agency in agencies[: domain.MAX_LISTED]
            )
            more = (Line("more_agencies"),) if len(agencies) > domain.MAX_LISTED else ()
            return Reply(said=(*listed, *more) or (Line("no_agencies"),), ask=state.at(Step.AGENCY))
        candidates = await self._agencies_with_code(keys)
        if not candidates:
            return domain.wrong_key(state, "unknown_agency")
        if len(candidates) > 1:
            return Reply(ask=state.at(Step.PICK_AGENCY, agency_code=keys))
        [agency] = candidates
        return Reply(
            said=(Line("agency_chosen", {"name": agency.name}),),
            ask=state.at(Step.CASE, agency_code=keys, agency_id=agency.agency_id),
        )

    async def _pick_agency(self, state: CallState, caller: Caller) -> Reply:
        candidates = await self._agencies_with_code(state.agency_code or "")
        if int(caller.keys) > len(candidates):
            return domain.wrong_key(state)
        chosen = candidates[int(caller.keys) - 1]
        return Reply(
            said=(Line("agency_chosen", {"name": chosen.name}),),
            ask=state.at(Step.CASE, agency_id=chosen.agency_id),
        )

    async def _with_choices(self, reply: Reply) -> Reply:
        """A question among agencies sharing a number names them each time it is asked."""
        if reply.ask is None or reply.ask.step is not Step.PICK_AGENCY:
            return reply
        candidates = await self._agencies_with_code(reply.ask.agency_code or "")
        choices = tuple(
            Line("pick_agency_entry", {"index": index, "name": agency.name})
            for index, agency in enumerate(candidates, start=1)
        )
        return Reply(said=reply.said, ask=reply.ask, prompt=choices)

    async def _require_agency(self, state: CallState) -> Agency:
        if state.agency_id is None:
            raise NotFoundError("the call has no agency yet")
        return await lookup.agency(self._context, state.agency_id)

    # --- the case ---------------------------------------------------------------------------------------------

    async def _case(self, agency_id: str, digits: str, caller: str) -> tuple[SubjectIdentifier, CustodyView | None]:
        """The identifier the digits stand for and what the lookup may say of it (None: unknown or sealed, which
        read the same). Digits matching no known number stand for a case number written in digits only."""
        async with self._context.pool.acquire() as connection:
            candidates = await hotline_store.identifiers_by_digits(connection, agency_id, digits)
        for identifier in candidates:
            try:
                return identifier, await lookup.lookup(self._context, agency_id, identifier, f"hotline:{caller}")
            except NotFoundError:
                continue
        if candidates:
            return candidates[0], None
        return SubjectIdentifier(kind=IdentifierKind.CASE_NUMBER, value=digits), None

    async def _status(self, asked: CallState, caller: Caller) -> Reply:
        state = asked.at(Step.MENU, case=caller.keys)
        agency = await self._require_agency(state)
        digits = caller.keys
        _, view = await self._case(agency.agency_id, digits, caller.number)
        number = domain.spell(digits)
        if view is None:
            return Reply(said=(Line("no_information", {"number": number}),), ask=state)
        when = view.effective_at.astimezone(ZoneInfo(agency.timezone))
        line = Line(
            "status",
            {
                "agency": agency.name,
                "number": number,
                "status": view.status.value,
                "facility": view.facility,
                "year": when.year,
                "month": when.month,
                "day": when.day,
                "hour": when.hour,
                "minute": when.minute,
            },
        )
        return Reply(said=(line,), ask=state)

    # --- after the status -------------------------------------------------------------------------------------

    async def _menu(self, state: CallState, caller: Caller) -> Reply:
        choice = MenuChoice(caller.keys)
        if choice is MenuChoice.ANOTHER_CASE:
            return Reply(ask=state.at(Step.AGENCY, agency_code=None, agency_id=None, case=None))
        if choice is MenuChoice.STOP_CALLS:
            return Reply(ask=state.at(Step.STOP_PIN))
        if choice is MenuChoice.REGISTER:
            return await self._start_registering(state, caller)
        agency = await self._require_agency(state)
        resources = await lookup.agency_resources(self._context, agency.agency_id)
        if choice is MenuChoice.RESOURCES:
            return Reply(said=resource_lines(resources), ask=state.at(Step.MENU))
        line = self._victim_services_line(agency, resources)
        if line is None:
            return Reply(said=(Line("no_line"),), ask=state.at(Step.MENU))
        return Reply(said=(Line("connecting"),), dial=line)

    def _victim_services_line(self, agency: Agency, resources: AgencyResources) -> str | None:
        """The number 0 dials, in E.164: the profile's victim-services line, else a contact of
        :data:`CONNECT_ROLES`; None when the agency gave none we can dial."""
        contacts = (contact.phone for role in CONNECT_ROLES for contact in resources.contacts if contact.role is role)
        for phone in (agency.victim_services_phone, *contacts):
            if phone:
                try:
                    return normalise_voice_number(phone, self._context.settings.default_phone_region)
                except InvalidContactError:
                    continue
        return None

    # --- registering the phone --------------------------------------------------------------------------------

    async def _start_registering(self, state: CallState, caller: Caller) -> Reply:
        blocker = await self._cannot_register(state, caller.number)
        if blocker is not None:
            return Reply(said=(Line(blocker),), ask=state.at(Step.MENU))
        return Reply(ask=state.at(Step.PIN))

    async def _cannot_register(self, state: CallState, caller: str) -> str | None:
        """The phrase saying why this phone cannot be registered for the case: a hidden number, or calls about the
        case already go to it; None when it can."""
        try:
            number = normalise_voice_number(caller, self._context.settings.default_phone_region)
        except InvalidContactError:
            return "hidden_number"
        agency_id = state.agency_id or ""
        identifier, _ = await self._case(agency_id, state.case or "", caller)
        return "already_registered" if await self._calls_go_to(agency_id, identifier, number) else None

    async def _calls_go_to(self, agency_id: str, identifier: SubjectIdentifier, number: str) -> bool:
        async with self._context.pool.acquire() as connection:
            index = self._context.cipher.blind_index(number)
            return bool(await hotline_store.subscriptions_calling(connection, agency_id, identifier, index))

    async def _register(self, state: CallState, caller: str, pin: str) -> Reply:
        """A subscription whose only contact is the calling number, verified by this very call (it is the number
        that is calling us), with the PIN chosen; published like any other."""
        context = self._context
        agency = await self._require_agency(state)
        identifier, _ = await self._case(agency.agency_id, state.case or "", caller)
        number = normalise_voice_number(caller, context.settings.default_phone_region)
        if await self._calls_go_to(agency.agency_id, identifier, number):  # registered meanwhile, on another line
            return domain.goodbye("goodbye", first=Line("already_registered"))
        try:
            await count(context, contact_limit(context), context.cipher.blind_index(number))
        except TooManyRequestsError:
            return domain.goodbye("registration_refused")
        now = context.now()
        subscription_id = str(uuid.uuid4())
        pin_hash = hash_pin(context.settings.blind_index_key, subscription_id, pin)
        contact = new_contact(context, Channel.VOICE, number, number, pin_hash=pin_hash)
        subscription = new_subscription(
            subscription_id=subscription_id,
            agency_id=agency.agency_id,
            identifier=identifier,
            contacts=(contact.model_copy(update={"verified": True}),),
            language=state.language,
            timezone=agency.timezone,
            event_types=ALL_EVENT_TYPES,
            quiet_hours=DEFAULT_QUIET_HOURS,
            now=now,
            status="active",
        )
        async with context.pool.acquire() as connection, connection.transaction():
            await insert_subscription(connection, subscription)
            await publish_state(context, connection, subscription)
        SUBSCRIPTIONS_CHANGED.labels("created_by_phone").inc()
        log.info(
            "subscription created on the hotline",
            extra={"subscription_id": subscription_id, "agency_id": agency.agency_id},
        )
        return Reply(said=(Line("registered", {"agency": agency.name, "number": domain.spell(state.case or "")}),))

    # --- stopping the calls -----------------------------------------------------------------------------------

    async def _stop_calls(self, state: CallState, caller: Caller) -> Reply:
        """The PIN of a registration calling this number about the case ends those calls (unsubscribed, as a
        cancel ends them: delivery drops the calls still to come). A wrong PIN and a number that gets no calls
        hear the same answer, so the line never tells who is registered."""
        context = self._context
        try:
            number = normalise_voice_number(caller.number, context.settings.default_phone_region)
        except InvalidContactError:
            return domain.stop_refused(state)
        try:
            await count(context, self._stop_pin_limit, f"hotline-stop:{number}")
        except TooManyRequestsError:
            return domain.stop_refused(state)  # the same words: a guesser learns nothing, not even the limit
        agency = await self._require_agency(state)
        identifier, _ = await self._case(agency.agency_id, state.case or "", caller.number)
        index = context.cipher.blind_index(number)
        now = context.now()
        stopped: list[str] = []
        async with context.pool.acquire() as connection, connection.transaction():
            for subscription_id in await hotline_store.subscriptions_calling(
                connection, agency.agency_id, identifier, index
            ):
                subscription = await load_for_update(connection, subscription_id)
                contact = subscription.contact(Channel.VOICE)
                key = context.settings.blind_index_key
                if contact.pin_hash is None or not pin_matches(key, subscription_id, caller.keys, contact.pin_hash):
                    continue
                changed = unsubscribe(subscription, Channel.VOICE, now)
                if changed is None:
                    continue
                await update_subscription(connection, changed)
                await publish_state(context, connection, changed)
                stopped.append(subscription_id)
        if not stopped:
            return domain.stop_refused(state)
        SUBSCRIPTIONS_CHANGED.labels("calls_stopped_by_phone").inc(len(stopped))
        log.info("calls stopped on the hotline", extra={"subscription_ids": stopped, "agency_id": agency.agency_id})
        return Reply(said=(Line("calls_stopped", {"agency": agency.name, "number": domain.spell(state.case or "")}),))


def resource_lines(resources: AgencyResources) -> tuple[Line, ...]:
    """The agency's contacts and referrals, one ``<Say>`` each, numbers spelled; that calling never reports anyone."""
    contacts = tuple(
        Line(
            "contact",
            {
                "role": contact.role.value,
                "name": contact.name,
                "phone": domain.spell(contact.phone or ""),
                "hours": contact.hours,
            },
        )
        for contact in resources.contacts
    )
    referrals = tuple(
        Line(
            "referral",
            {"category": referral.category.value, "name": referral.name, "phone": domain.spell(referral.phone or "")},
        )
        for referral in resources.referrals
    )
    if not contacts and not referrals:
        return (Line("no_resources"),)
    return (*contacts, *referrals, Line("not_police"))
