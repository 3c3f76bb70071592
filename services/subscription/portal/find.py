"""The start page and finding a case: by number (answered like the lookup API) or, where the agency allows it,
by name."""

from __future__ import annotations

from dataclasses import dataclass
from zoneinfo import ZoneInfo

import phonenumbers
from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse, RedirectResponse, Response

from services.subscription import flows
from services.subscription.deps import client_key
from services.subscription.domain.errors import (
    NotFoundError,
    TooManyRequestsError,
)
from services.subscription.domain.names import MAX_RESULTS
from services.subscription.flows.context import Context
from services.subscription.hotline.domain import agency_code
from services.subscription.portal.case import resources_context
from services.subscription.portal.forms import (
    FieldError,
    FindForm,
    NameForm,
    name_form,
)
from services.subscription.portal.views import Posted, Views
from services.subscription.portal.web import Pages
from shared.events import SubjectIdentifier
from shared.vocabulary import CustodyStatus, IdentifierKind


@dataclass(frozen=True)
class Dialled:
    """A phone number for a page: ``e164`` for the ``tel:`` link, ``shown`` as people dial it (1-800-555-0177)."""

    e164: str
    shown: str


def dialled(e164: str) -> Dialled:
    number = phonenumbers.parse(e164)
    rfc3966 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.RFC3966)
    return Dialled(e164=e164, shown=rfc3966.removeprefix("tel:+"))


def find_router(context: Context, pages: Pages) -> APIRouter:  # noqa: PLR0915 - one route each
    router = APIRouter(include_in_schema=False)
    views = Views(context, pages)

    # --- start and find a case ---------------------------------------------------------------------------------

    @router.get("/assets/portal.css")
    async def stylesheet() -> Response:
        return PlainTextResponse(
            pages.renderer.stylesheet, media_type="text/css", headers={"Cache-Control": "public, max-age=3600"}
        )

    @router.get("/")
    async def start(request: Request) -> Response:
        return pages.render(request, "start", pages.language(request))

    hotline_number = None if context.settings.hotline_number is None else dialled(context.settings.hotline_number)

    async def find_page(request: Request, form: FindForm, errors: list[FieldError], status_code: int) -> Response:
        known = await flows.lookup.active_agencies(context)
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
            hotline_number=hotline_number,
            hotline_codes=[(agency.name, agency_code(agency.agency_id)) for agency in known],
        )

    async def name_search_agencies() -> list[tuple[str, str]]:
        return [
            (agency.agency_id, agency.name)
            for agency in await flows.lookup.active_agencies(context)
            if agency.public_name_search
        ]

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
        return await name_page(request, name_form(pages.draft(request)), [], 200)

    @router.post("/find/name")
    async def find_name_post(request: Request, fields: Posted) -> Response:
        form = NameForm.model_validate(fields)
        errors = form.problems({agency_id for agency_id, _ in await name_search_agencies()})
        if errors:
            return await name_page(request, form, errors, 422)
        draft = pages.draft(request).model_copy(update=form.model_dump())
        return pages.redirect("/find/name/results", draft=draft)

    @router.get("/find/name/results")
    async def find_name_results(request: Request) -> Response:
        draft = pages.draft(request)
        form = name_form(draft)
        if form.problems({draft.agency_id}):
            return RedirectResponse("/find/name", status_code=303)
        try:
            found = await flows.lookup.search_by_name(
                context,
                draft.agency_id,
                draft.last_name,
                draft.first_name,
                client_key(request),
                birth_date=form.birth_date(),
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
        errors = form.problems({agency.agency_id for agency in await flows.lookup.active_agencies(context)})
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
            view = await flows.lookup.lookup(context, draft.agency_id, identifier, client_key(request))
            local = view.effective_at.astimezone(
                ZoneInfo((await flows.lookup.agency(context, draft.agency_id)).timezone)
            )
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
            agency_name=await views.agency_name(draft.agency_id),
            kind=draft.kind,
            number=draft.number,
            status=status,
            facility=facility,
            since=since,
            **await resources_context(context, draft.agency_id),
        )

    return router
