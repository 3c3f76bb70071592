"""Registering: how to contact you, your choices, check your answers; nothing is stored before the last page."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from services.subscription import flows
from services.subscription.deps import client_key
from services.subscription.domain.errors import (
    ConflictError,
    SubscriptionError,
)
from services.subscription.domain.subscription import ALL_EVENT_TYPES
from services.subscription.flows.context import Context
from services.subscription.portal.forms import (
    ContactForm,
    Draft,
    OptionsForm,
)
from services.subscription.portal.views import Posted, Views
from services.subscription.portal.web import Pages
from shared.events import SubjectIdentifier
from shared.vocabulary import IdentifierKind, Language


def register_router(context: Context, pages: Pages) -> APIRouter:
    router = APIRouter(include_in_schema=False)
    views = Views(context, pages)

    # --- register ----------------------------------------------------------------------------------------------

    @router.get("/register/contact")
    async def register_contact(request: Request) -> Response:
        draft = pages.draft(request)
        if not draft.found():
            return RedirectResponse("/find", status_code=303)
        form = ContactForm(sms=draft.sms, email=draft.email, voice=draft.voice)
        return pages.render(request, "register_contact", pages.language(request), form=form)

    @router.post("/register/contact")
    async def register_contact_post(request: Request, fields: Posted) -> Response:
        form = ContactForm.model_validate(fields)
        normalised, errors = form.normalised(context.settings.default_phone_region)
        if errors:
            language = pages.language(request)
            return pages.render(request, "register_contact", language, status_code=422, form=form, errors=errors)
        draft = pages.draft(request).model_copy(
            update={"sms": normalised.sms, "email": normalised.email, "voice": normalised.voice, "pin": normalised.pin}
        )
        return pages.redirect("/register/options", draft=draft)

    async def draft_options(request: Request, draft: Draft) -> tuple[OptionsForm, str]:
        agency_timezone = (await flows.lookup.agency(context, draft.agency_id)).timezone
        if draft.options is not None:
            return draft.options, agency_timezone
        default = OptionsForm.of(
            pages.language(request), agency_timezone, ALL_EVENT_TYPES, flows.subscribe.DEFAULT_QUIET_HOURS
        )
        return default, agency_timezone

    @router.get("/register/options")
    async def register_options(request: Request) -> Response:
        draft = pages.draft(request)
        if not draft.reachable():
            return RedirectResponse("/register/contact", status_code=303)
        form, agency_timezone = await draft_options(request, draft)
        language = pages.language(request)
        return pages.render(
            request, "register_options", language, **views.options_context(language, form, agency_timezone)
        )

    @router.post("/register/options")
    async def register_options_post(request: Request, fields: Posted) -> Response:
        draft = pages.draft(request)
        if not draft.reachable():
            return RedirectResponse("/register/contact", status_code=303)
        form = OptionsForm.model_validate(fields)
        errors = form.problems()
        if errors:
            language = pages.language(request)
            agency_timezone = (await flows.lookup.agency(context, draft.agency_id)).timezone
            return pages.render(
                request,
                "register_options",
                language,
                status_code=422,
                errors=errors,
                **views.options_context(language, form, agency_timezone),
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
            for channel, value in (("sms", draft.sms), ("email", draft.email), ("voice", draft.voice))
            if value
        ]
        answers = views.summary(
            language,
            agency_name=await views.agency_name(draft.agency_id),
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
            created = await flows.subscribe.subscribe(
                context,
                flows.subscribe.NewSubscription(
                    agency_id=draft.agency_id,
                    identifier=SubjectIdentifier(kind=IdentifierKind(draft.kind), value=draft.number),
                    sms=draft.sms or None,
                    email=draft.email or None,
                    voice=draft.voice or None,
                    pin=draft.pin or None,
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

    return router
