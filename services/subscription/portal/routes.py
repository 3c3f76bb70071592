"""The portal's pages: start, find a case, register (contact, choices, check your answers), enter codes, manage.
Every change is a POST form with a CSRF token answered by a redirect (POST-redirect-GET); GET never changes state.
Each route calls the subscription service, exactly as the JSON API does."""

from datetime import time
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Request
from fastapi.responses import PlainTextResponse, RedirectResponse, Response

from services.subscription.api import client_key
from services.subscription.domain.errors import (
    ConflictError,
    GoneError,
    InvalidContactError,
    InvalidRequestError,
    NotFoundError,
    SubscriptionError,
    TooManyRequestsError,
)
from services.subscription.domain.names import MAX_RESULTS
from services.subscription.domain.subscription import ALL_EVENT_TYPES, Subscription
from services.subscription.portal.forms import (
    AddContactForm,
    CodeForm,
    ContactForm,
    Draft,
    FieldError,
    FindForm,
    NameForm,
    OptionsForm,
)
from services.subscription.portal.web import Pages, PortalRefusal
from services.subscription.service import NewSubscription, Preferences, SubscriptionService
from shared.events import SubjectIdentifier
from shared.vocabulary import Channel, CustodyStatus, IdentifierKind, Language

TIMEZONES = (
    "America/New_York",
    "America/Chicago",
    "America/Denver",
    "America/Phoenix",
    "America/Los_Angeles",
    "America/Anchorage",
    "Pacific/Honolulu",
    "America/Puerto_Rico",
    "UTC",
)
DEFAULT_QUIET_HOURS = (time(21, 0), time(7, 0))
DONE = frozenset({"active", "verified", "changed", "unchanged", "cancelled", "contact_added", "contact_removed"})


def create_portal_router(service: SubscriptionService, pages: Pages) -> APIRouter:  # noqa: PLR0915 - one route each
    router = APIRouter(include_in_schema=False)
    words = pages.renderer.words

    async def linked(request: Request, token: str) -> Subscription:
        """The subscription of the manage link in the path, or its problem page."""
        try:
            return await service.manage_view(token, client_key(request))
        except SubscriptionError as problem:
            raise PortalRefusal(pages.error_page(request, problem)) from None

    # Without ``from __future__ import annotations`` here: FastAPI reads these local names from the signatures.
    Linked = Annotated[Subscription, Depends(linked)]  # noqa: N806 - a type alias
    Posted = Annotated[dict[str, Any], Depends(pages.posted)]  # noqa: N806 - a type alias

    def timezone_options(language: Language, *extra: str) -> list[tuple[str, str]]:
        zones = dict.fromkeys((*extra, *TIMEZONES))
        return [(zone, words(language).get(f"tz.{zone}", zone)) for zone in zones]

    def event_options(language: Language) -> list[tuple[str, str, None]]:
        return [(str(status), words(language)[f"event.{status}"], None) for status in ALL_EVENT_TYPES]

    def options_context(language: Language, form: OptionsForm, agency_timezone: str) -> dict[str, Any]:
        return {
            "form": form,
            "timezones": timezone_options(language, agency_timezone, form.timezone),
            "event_options": event_options(language),
        }

    def summary(
        language: Language,
        *,
        agency_name: str,
        kind: str,
        number: str,
        contacts: list[dict[str, str | None]],
        options: OptionsForm,
        change: bool,
    ) -> dict[str, Any]:
        return {
            "agency_name": agency_name,
            "kind": kind,
            "number": number,
            "contacts": contacts,
            "language": options.language,
            "timezone_name": words(language).get(f"tz.{options.timezone}", options.timezone),
            "event_types": options.event_types,
            "all_events": len(options.event_types) == len(ALL_EVENT_TYPES),
            "quiet_start": options.quiet_start if options.quiet == "on" else "",
            "quiet_end": options.quiet_end if options.quiet == "on" else "",
            "change": change,
        }

    async def agency_name(agency_id: str) -> str:
        try:
            return (await service.agency(agency_id)).name
        except NotFoundError:
            return agency_id

    # --- start and find a case ---------------------------------------------------------------------------------

    @router.get("/assets/portal.css")
    async def stylesheet() -> Response:
        return PlainTextResponse(
            pages.renderer.stylesheet, media_type="text/css", headers={"Cache-Control": "public, max-age=3600"}
        )

    @router.get("/")
    async def start(request: Request) -> Response:
        return pages.render(request, "start", pages.language(request))

    async def find_page(request: Request, form: FindForm, errors: list[FieldError], status_code: int) -> Response:
        known = await service.agencies()
        agencies = [(agency.agency_id, agency.name) for agency in known]
        return pages.render(
            request,
            "find",
            pages.language(request),
            status_code=status_code,
            form=form,
            agencies=agencies,
            errors=errors,
            name_search=any(agency.public_name_search for agency in known),
        )

    async def name_search_agencies() -> list[tuple[str, str]]:
        return [(agency.agency_id, agency.name) for agency in await service.agencies() if agency.public_name_search]

    async def name_page(request: Request, form: NameForm, errors: list[FieldError], status_code: int) -> Response:
        agencies = await name_search_agencies()
        return pages.render(
            request,
            "find_name",
            pages.language(request),
            status_code=status_code,
            form=form,
            agencies=agencies,
            errors=errors,
        )

    @router.get("/find/name")
    async def find_name(request: Request) -> Response:
        draft = pages.draft(request)
        form = NameForm(agency_id=draft.agency_id, last_name=draft.last_name, first_name=draft.first_name)
        return await name_page(request, form, [], 200)

    @router.post("/find/name")
    async def find_name_post(request: Request, fields: Posted) -> Response:
        form = NameForm.model_validate(fields)
        errors = form.problems({agency_id for agency_id, _ in await name_search_agencies()})
        if errors:
            return await name_page(request, form, errors, 422)
        draft = pages.draft(request).model_copy(
            update={"agency_id": form.agency_id, "last_name": form.last_name, "first_name": form.first_name}
        )
        return pages.redirect("/find/name/results", draft=draft)

    @router.get("/find/name/results")
    async def find_name_results(request: Request) -> Response:
        draft = pages.draft(request)
        form = NameForm(agency_id=draft.agency_id, last_name=draft.last_name, first_name=draft.first_name)
        if form.problems({draft.agency_id}):
            return RedirectResponse("/find/name", status_code=303)
        try:
            found = await service.search_by_name(
                draft.agency_id, draft.last_name, draft.first_name, client_key(request)
            )
        except TooManyRequestsError:
            return await name_page(request, form, [FieldError(field="last_name", key="name.too_many")], 429)
        except NotFoundError:
            return RedirectResponse("/find/name", status_code=303)
        people = [
            {
                "display_name": match.display_name,
                "status": match.status.value,
                "facility": match.facility,
                "kind": match.identifier.kind.value,
                "number": match.identifier.value,
            }
            for match in found
        ]
        return pages.render(
            request, "find_name_results", pages.language(request), people=people, full=len(people) >= MAX_RESULTS
        )

    @router.post("/find/name/choose")
    async def find_name_choose(request: Request, fields: Posted) -> Response:
        draft = pages.draft(request)
        chosen = FindForm.model_validate({**fields, "agency_id": draft.agency_id})
        if chosen.problems({draft.agency_id}):
            return RedirectResponse("/find/name", status_code=303)
        return pages.redirect(
            "/register/contact", draft=draft.model_copy(update={"kind": chosen.kind, "number": chosen.number})
        )

    @router.get("/find")
    async def find(request: Request) -> Response:
        draft = pages.draft(request)
        form = FindForm(agency_id=draft.agency_id, kind=draft.kind, number=draft.number)
        return await find_page(request, form, [], 200)

    @router.post("/find")
    async def find_post(request: Request, fields: Posted) -> Response:
        form = FindForm.model_validate(fields)
        errors = form.problems({agency.agency_id for agency in await service.agencies()})
        if errors:
            return await find_page(request, form, errors, 422)
        draft = pages.draft(request).model_copy(
            update={"agency_id": form.agency_id, "kind": form.kind, "number": form.number}
        )
        return pages.redirect("/find/result", draft=draft)

    @router.get("/find/result")
    async def find_result(request: Request) -> Response:
        draft = pages.draft(request)
        if not draft.found():
            return RedirectResponse("/find", status_code=303)
        language = pages.language(request)
        identifier = SubjectIdentifier(kind=IdentifierKind(draft.kind), value=draft.number)
        status: CustodyStatus | None = None
        facility = since = None
        try:
            view = await service.lookup(draft.agency_id, identifier, client_key(request))
            local = view.effective_at.astimezone(ZoneInfo((await service.agency(draft.agency_id)).timezone))
            status, facility, since = view.status, view.facility, f"{local:%Y-%m-%d %H:%M %Z}"
        except TooManyRequestsError:
            form = FindForm(agency_id=draft.agency_id, kind=draft.kind, number=draft.number)
            return await find_page(request, form, [FieldError(field="number", key="lookup.too_many")], 429)
        except NotFoundError:
            pass  # unknown or sealed: the same answer
        return pages.render(
            request,
            "find_result",
            language,
            agency_name=await agency_name(draft.agency_id),
            kind=draft.kind,
            number=draft.number,
            status=status,
            facility=facility,
            since=since,
        )

    # --- register ----------------------------------------------------------------------------------------------

    @router.get("/register/contact")
    async def register_contact(request: Request) -> Response:
        draft = pages.draft(request)
        if not draft.found():
            return RedirectResponse("/find", status_code=303)
        form = ContactForm(sms=draft.sms, email=draft.email)
        return pages.render(request, "register_contact", pages.language(request), form=form)

    @router.post("/register/contact")
    async def register_contact_post(request: Request, fields: Posted) -> Response:
        form = ContactForm.model_validate(fields)
        normalised, errors = form.normalised(service.settings.default_phone_region)
        if errors:
            language = pages.language(request)
            return pages.render(request, "register_contact", language, status_code=422, form=form, errors=errors)
        draft = pages.draft(request).model_copy(update={"sms": normalised.sms, "email": normalised.email})
        return pages.redirect("/register/options", draft=draft)

    async def draft_options(request: Request, draft: Draft) -> tuple[OptionsForm, str]:
        agency_timezone = (await service.agency(draft.agency_id)).timezone
        if draft.options is not None:
            return draft.options, agency_timezone
        default = OptionsForm.of(pages.language(request), agency_timezone, ALL_EVENT_TYPES, DEFAULT_QUIET_HOURS)
        return default, agency_timezone

    @router.get("/register/options")
    async def register_options(request: Request) -> Response:
        draft = pages.draft(request)
        if not draft.reachable():
            return RedirectResponse("/register/contact", status_code=303)
        form, agency_timezone = await draft_options(request, draft)
        language = pages.language(request)
        return pages.render(request, "register_options", language, **options_context(language, form, agency_timezone))

    @router.post("/register/options")
    async def register_options_post(request: Request, fields: Posted) -> Response:
        draft = pages.draft(request)
        if not draft.reachable():
            return RedirectResponse("/register/contact", status_code=303)
        form = OptionsForm.model_validate(fields)
        errors = form.problems()
        if errors:
            language = pages.language(request)
            agency_timezone = (await service.agency(draft.agency_id)).timezone
            return pages.render(
                request,
                "register_options",
                language,
                status_code=422,
                errors=errors,
                **options_context(language, form, agency_timezone),
            )
        return pages.redirect("/register/check", draft=draft.model_copy(update={"options": form}))

    @router.get("/register/check")
    async def register_check(request: Request) -> Response:
        draft = pages.draft(request)
        if not draft.reachable() or draft.options is None:
            return RedirectResponse("/register/options", status_code=303)
        language = pages.language(request)
        contacts: list[dict[str, str | None]] = [
            {"channel": channel, "shown": value, "state": None}
            for channel, value in (("sms", draft.sms), ("email", draft.email))
            if value
        ]
        answers = summary(
            language,
            agency_name=await agency_name(draft.agency_id),
            kind=draft.kind,
            number=draft.number,
            contacts=contacts,
            options=draft.options,
            change=True,
        )
        return pages.render(request, "register_check", language, summary=answers)

    @router.post("/register/check")
    async def register_check_post(request: Request, _csrf: Posted) -> Response:
        draft = pages.draft(request)
        if not draft.reachable() or draft.options is None:
            return RedirectResponse("/register/options", status_code=303)
        options = draft.options
        try:
            created = await service.subscribe(
                NewSubscription(
                    agency_id=draft.agency_id,
                    identifier=SubjectIdentifier(kind=IdentifierKind(draft.kind), value=draft.number),
                    sms=draft.sms or None,
                    email=draft.email or None,
                    language=Language(options.language),
                    timezone=options.timezone,
                    event_types=options.chosen_events(),
                    quiet_hours=options.quiet_hours(),
                ),
                client_key(request),
            )
        except ConflictError:
            return pages.problem(request, "agency", 409)
        except SubscriptionError as problem:
            return pages.error_page(request, problem)
        token = created.manage_url.rstrip("/").rsplit("/", 1)[-1]
        first = created.subscription.contacts[0].channel
        return pages.redirect(f"/manage/{token}/code/{first}", clear_draft=True)

    # --- codes -------------------------------------------------------------------------------------------------

    def code_page(
        request: Request,
        subscription: Subscription,
        token: str,
        channel: Channel,
        *,
        form: CodeForm,
        errors: list[FieldError],
        status_code: int = 200,
    ) -> Response:
        return pages.render(
            request,
            "code",
            pages.language(request, subscription.language),
            status_code=status_code,
            channel=channel.value,
            masked=subscription.contact(channel).masked,
            action=f"/manage/{token}/code/{channel}",
            form=form,
            errors=errors,
            sent=request.query_params.get("sent") == "1",
        )

    @router.get("/manage/{token}/code/{channel}")
    async def code(request: Request, subscription: Linked, token: str, channel: Channel) -> Response:
        if not subscription.has(channel) or subscription.contact(channel).verified:
            return RedirectResponse(f"/manage/{token}", status_code=303)
        return code_page(request, subscription, token, channel, form=CodeForm(), errors=[])

    @router.post("/manage/{token}/code/{channel}")
    async def code_post(
        request: Request, fields: Posted, subscription: Linked, token: str, channel: Channel
    ) -> Response:
        form = CodeForm.model_validate(fields)
        if not form.code:
            error = FieldError(field="code", key="code.missing")
            return code_page(request, subscription, token, channel, form=form, errors=[error], status_code=422)
        try:
            verified = await service.verify_code(
                subscription.subscription_id, token, channel, form.code, client_key(request)
            )
        except (InvalidRequestError, TooManyRequestsError, GoneError, ConflictError) as problem:
            error = FieldError(field="code", key=_code_problem(problem))
            return code_page(
                request, subscription, token, channel, form=CodeForm(), errors=[error], status_code=problem.status_code
            )
        waiting = [c.channel for c in verified.contacts if not c.verified and c.active]
        if waiting:
            return pages.redirect(f"/manage/{token}/code/{waiting[0]}")
        return pages.redirect(f"/manage/{token}?done=active")

    @router.post("/manage/{token}/code/{channel}/resend")
    async def code_resend(
        request: Request, _csrf: Posted, subscription: Linked, token: str, channel: Channel
    ) -> Response:
        try:
            await service.resend(subscription.subscription_id, token, channel, client_key(request))
        except (TooManyRequestsError, ConflictError) as problem:
            key = "code.wait" if isinstance(problem, TooManyRequestsError) else "code.done"
            error = FieldError(field="code", key=key)
            return code_page(
                request, subscription, token, channel, form=CodeForm(), errors=[error], status_code=problem.status_code
            )
        return pages.redirect(f"/manage/{token}/code/{channel}?sent=1")

    # --- manage ------------------------------------------------------------------------------------------------

    def contact_state(subscription: Subscription) -> list[dict[str, str | None]]:
        return [
            {
                "channel": c.channel.value,
                "shown": c.masked,
                "state": "stopped" if not c.active else ("confirmed" if c.verified else "waiting"),
            }
            for c in subscription.contacts
        ]

    async def manage_page(
        request: Request, subscription: Subscription, token: str, errors: list[FieldError], status_code: int = 200
    ) -> Response:
        language = pages.language(request, subscription.language)
        options = OptionsForm.of(
            subscription.language,
            subscription.timezone,
            subscription.event_types,
            (subscription.quiet_hours_start, subscription.quiet_hours_end),
        )
        done = request.query_params.get("done")
        working = [c for c in subscription.contacts if c.verified and c.active]
        return pages.render(
            request,
            "manage",
            language,
            status_code=status_code,
            errors=errors,
            done=done if done in DONE else None,
            status=subscription.status,
            base=f"/manage/{token}",
            summary=summary(
                language,
                agency_name=await agency_name(subscription.agency_id),
                kind=subscription.identifier.kind.value,
                number=subscription.identifier.value,
                contacts=contact_state(subscription),
                options=options,
                change=False,
            ),
            addable=[channel.value for channel in Channel if not subscription.has(channel)],
            removable=[c.channel.value for c in subscription.contacts if len(working) > 1 or c not in working],
        )

    @router.get("/manage/{token}")
    async def manage(request: Request, subscription: Linked, token: str) -> Response:
        return await manage_page(request, subscription, token, [])

    def settings_page(
        request: Request, subscription: Subscription, token: str, form: OptionsForm, errors: list[FieldError]
    ) -> Response:
        language = pages.language(request, subscription.language)
        return pages.render(
            request,
            "settings",
            language,
            status_code=422 if errors else 200,
            base=f"/manage/{token}",
            errors=errors,
            **options_context(language, form, subscription.timezone),
        )

    @router.get("/manage/{token}/settings")
    async def settings(request: Request, subscription: Linked, token: str) -> Response:
        form = OptionsForm.of(
            subscription.language,
            subscription.timezone,
            subscription.event_types,
            (subscription.quiet_hours_start, subscription.quiet_hours_end),
        )
        return settings_page(request, subscription, token, form, [])

    @router.post("/manage/{token}/settings")
    async def settings_post(request: Request, fields: Posted, subscription: Linked, token: str) -> Response:
        form = OptionsForm.model_validate(fields)
        errors = form.problems()
        if errors:
            return settings_page(request, subscription, token, form, errors)
        preferences = Preferences(
            language=Language(form.language),
            timezone=form.timezone,
            event_types=form.chosen_events(),
            quiet_hours=form.quiet_hours(),
        )
        try:
            changed = await service.manage_update(token, preferences, client_key(request))
        except SubscriptionError as problem:
            return pages.error_page(request, problem, subscription.language)
        done = "unchanged" if changed.version == subscription.version else "changed"
        return pages.redirect(f"/manage/{token}?done={done}")

    @router.get("/manage/{token}/contacts/{channel}")
    async def add_contact(request: Request, subscription: Linked, token: str, channel: Channel) -> Response:
        if subscription.has(channel):
            return RedirectResponse(f"/manage/{token}", status_code=303)
        language = pages.language(request, subscription.language)
        base = f"/manage/{token}"
        return pages.render(request, "add_contact", language, base=base, channel=channel.value, form=AddContactForm())

    @router.post("/manage/{token}/contacts/{channel}")
    async def add_contact_post(
        request: Request, fields: Posted, subscription: Linked, token: str, channel: Channel
    ) -> Response:
        form = AddContactForm.model_validate(fields)
        try:
            await service.add_contact(token, channel, form.value, client_key(request))
        except (InvalidContactError, TooManyRequestsError) as problem:
            key = "value.too_many" if isinstance(problem, TooManyRequestsError) else f"value.invalid_{channel}"
            return pages.render(
                request,
                "add_contact",
                pages.language(request, subscription.language),
                status_code=problem.status_code,
                base=f"/manage/{token}",
                channel=channel.value,
                form=form,
                errors=[FieldError(field="value", key=key)],
            )
        except SubscriptionError as problem:
            return pages.error_page(request, problem, subscription.language)
        return pages.redirect(f"/manage/{token}/code/{channel}")

    @router.post("/manage/{token}/contacts/{channel}/remove")
    async def remove_contact(
        request: Request, _csrf: Posted, subscription: Linked, token: str, channel: Channel
    ) -> Response:
        try:
            await service.remove_contact(token, channel, client_key(request))
        except ConflictError:
            return await manage_page(
                request, subscription, token, [FieldError(field="main", key="remove.last")], status_code=409
            )
        except SubscriptionError as problem:
            return pages.error_page(request, problem, subscription.language)
        return pages.redirect(f"/manage/{token}?done=contact_removed")

    @router.post("/manage/{token}/new-link")
    async def new_link(request: Request, _csrf: Posted, token: str) -> Response:
        try:
            await service.renew_manage_link(token, client_key(request))
        except SubscriptionError as problem:
            return pages.error_page(request, problem)
        return pages.redirect("/link-sent")

    @router.get("/link-sent")
    async def link_sent(request: Request) -> Response:
        language = pages.language(request)
        return pages.render(request, "message", language, page="link_sent", action=None, hidden=[], home=False)

    @router.get("/manage/{token}/cancel")
    async def cancel(request: Request, subscription: Linked, token: str) -> Response:
        language = pages.language(request, subscription.language)
        return pages.render(request, "cancel", language, base=f"/manage/{token}")

    @router.post("/manage/{token}/cancel")
    async def cancel_post(request: Request, _csrf: Posted, token: str) -> Response:
        try:
            await service.manage_cancel(token, client_key(request))
        except SubscriptionError as problem:
            return pages.error_page(request, problem)
        return pages.redirect(f"/manage/{token}?done=cancelled")

    return router


def _code_problem(problem: SubscriptionError) -> str:
    if isinstance(problem, GoneError):
        return "code.expired"
    if isinstance(problem, TooManyRequestsError):
        return "code.too_many"
    if isinstance(problem, ConflictError):
        return "code.done"
    return "code.wrong"
