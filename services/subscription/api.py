"""HTTP routes: parse the request, call the use case, shape the answer."""

from __future__ import annotations

from datetime import date
from typing import Annotated

from fastapi import APIRouter, FastAPI, Path, Query, Request, Response
from fastapi.exception_handlers import http_exception_handler, request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from services.subscription import flows
from services.subscription.deps import ClientAddress, ManageToken, TwilioForm
from services.subscription.domain.errors import InvalidRequestError, NotFoundError, ProblemCode, SubscriptionError
from services.subscription.flows.context import Context
from services.subscription.portal.web import Pages, PortalRefusal, refusal_page
from services.subscription.schemas import (
    AGENCY_PATTERN,
    SUBSCRIBE_PROBLEMS,
    CreatedView,
    CustodyStatusView,
    IdentifierBody,
    PeopleView,
    PersonView,
    PreferencesPatch,
    Problem,
    ResendRequest,
    SubscribeRequest,
    SubscriptionView,
    VerifyLinkRequest,
    VerifyRequest,
    problem_responses,
)
from shared.events import SubjectIdentifier
from shared.vocabulary import IdentifierKind

ONE_CLICK_FIELD, ONE_CLICK_VALUE = "List-Unsubscribe", "One-Click"
PROBLEMS: dict[int | str, dict[str, object]] = {
    code: {"model": Problem} for code in (400, 401, 403, 404, 409, 410, 422, 429)
}


def problem_response(problem: SubscriptionError) -> JSONResponse:
    headers = {"Retry-After": str(problem.retry_after)} if problem.retry_after is not None else None
    body = {"detail": problem.detail, "code": problem.code}
    return JSONResponse(body, status_code=problem.status_code, headers=headers)


def wants_html(request: Request) -> bool:
    """A browser (it asks for HTML before JSON); programs get JSON, as they always did."""
    accept = request.headers.get("accept", "").lower()
    html, json = accept.find("text/html"), accept.find("application/json")
    return html >= 0 and (json < 0 or html < json)


def add_error_handlers(app: FastAPI, pages: Pages) -> None:
    """Problems as JSON ``{"detail": ...}``; a browser on a portal address gets a page in its language instead."""

    async def handle_problem(_: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, SubscriptionError)  # noqa: S101 - registered for this type only
        return problem_response(error)

    async def portal_error_page(request: Request, error: Exception) -> Response:
        """A browser on a portal address gets a page in its language; programs and /v1 keep FastAPI's JSON."""
        if wants_html(request) and not request.url.path.startswith("/v1/"):
            status = error.status_code if isinstance(error, StarletteHTTPException) else 422
            return pages.problem(request, "not_found" if status == 404 else "invalid", status)
        if isinstance(error, RequestValidationError):
            return await request_validation_exception_handler(request, error)
        assert isinstance(error, StarletteHTTPException)  # noqa: S101 - registered for these two types only
        return await http_exception_handler(request, error)

    app.add_exception_handler(SubscriptionError, handle_problem)
    app.add_exception_handler(PortalRefusal, refusal_page)
    app.add_exception_handler(StarletteHTTPException, portal_error_page)
    app.add_exception_handler(RequestValidationError, portal_error_page)


def create_router(context: Context, pages: Pages) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["subscriptions"], responses=PROBLEMS)

    @router.post(
        "/subscriptions",
        status_code=201,
        summary="Subscribe to a case at an agency",
        description="Each contact point is sent a code to confirm it; nothing is sent to it before. A body that "
        "breaks the schema gets FastAPI's validation error; one that keeps to it is created or refused with one of "
        "the codes listed under its status.",
        responses=problem_responses(SUBSCRIBE_PROBLEMS),
    )
    async def subscribe(body: SubscribeRequest, client: ClientAddress) -> CreatedView:
        created = await flows.subscribe.subscribe(
            context,
            flows.subscribe.NewSubscription(
                agency_id=body.agency_id,
                identifier=SubjectIdentifier(kind=body.identifier.kind, value=body.identifier.value),
                sms=body.sms,
                email=body.email,
                voice=body.voice,
                pin=body.pin,
                language=body.language,
                timezone=body.timezone,
                event_types=body.event_types,
                quiet_hours=(body.quiet_hours.start, body.quiet_hours.end) if body.quiet_hours else None,
            ),
            client,
        )
        view = SubscriptionView.of(created.subscription)
        return CreatedView(**view.model_dump(), manage_url=created.manage_url)

    @router.post("/subscriptions/{subscription_id}/verify", summary="Verify a contact point with its code")
    async def verify(
        subscription_id: str,
        body: VerifyRequest,
        token: ManageToken,
        client: ClientAddress,
    ) -> SubscriptionView:
        return SubscriptionView.of(
            await flows.verify.verify_code(context, subscription_id, token, body.channel, body.code, client=client)
        )

    @router.post("/subscriptions/{subscription_id}/resend", status_code=202, summary="Send a new verification code")
    async def resend(
        subscription_id: str,
        body: ResendRequest,
        token: ManageToken,
        client: ClientAddress,
    ) -> SubscriptionView:
        return SubscriptionView.of(await flows.verify.resend(context, subscription_id, token, body.channel, client))

    @router.get(
        "/verify",
        response_class=HTMLResponse,
        summary="The emailed verification link: a page with one button (a prefetching scanner verifies nothing)",
    )
    async def verify_link_page(request: Request, token: Annotated[str, Query(max_length=1024)]) -> Response:
        language = pages.language(request)
        return pages.render(
            request, "message", language, page="verify", action="/v1/verify", hidden=[("token", token)], home=False
        )

    @router.post(
        "/verify",
        summary="Verify an email address with the token of its link",
        description='Programs send JSON (`{"token": ...}`) and get the subscription; the link\'s page posts a form '
        "(token and CSRF token) and gets a page.",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {"schema": VerifyLinkRequest.model_json_schema()},
                    "application/x-www-form-urlencoded": {"schema": {"type": "object"}},
                },
            }
        },
        response_model=SubscriptionView,
    )
    async def verify_link(request: Request) -> Response:
        if request.headers.get("content-type", "").startswith("application/json"):
            try:
                body = VerifyLinkRequest.model_validate_json(await request.body())
            except ValidationError as error:
                problems = error.errors(include_input=False, include_url=False)  # bytes input cannot be encoded
                raise RequestValidationError([{**p, "loc": ("body", *p["loc"])} for p in problems]) from None
            return JSONResponse(
                SubscriptionView.of(await flows.verify.verify_link(context, body.token)).model_dump(mode="json")
            )
        fields = await pages.form(request)
        if fields is None:
            return pages.csrf_refused(request)
        try:
            subscription = await flows.verify.verify_link(context, str(fields.get("token", ""))[:1024])
        except SubscriptionError as problem:
            return pages.error_page(request, problem)
        language = pages.language(request, subscription.language)
        return pages.render(request, "message", language, page="verified", action=None, hidden=[], home=False)

    @router.get(
        "/manage/{token}",
        summary="See your subscription (private link)",
        description="A browser (Accept: text/html) is sent to the portal's manage page; programs get JSON.",
        responses={303: {"description": "To the portal's manage page"}},
        response_model=SubscriptionView,
    )
    async def manage_view(token: str, request: Request, client: ClientAddress) -> Response:
        if wants_html(request):
            return RedirectResponse(f"/manage/{token}", status_code=303)
        return JSONResponse(
            SubscriptionView.of(await flows.manage.manage_view(context, token, client)).model_dump(mode="json")
        )

    @router.patch("/manage/{token}", summary="Change language, time zone, events or quiet hours")
    async def manage_update(token: str, body: PreferencesPatch, client: ClientAddress) -> SubscriptionView:
        preferences = flows.manage.Preferences(
            language=body.language,
            timezone=body.timezone,
            event_types=body.event_types,
            quiet_hours=(body.quiet_hours.start, body.quiet_hours.end) if body.quiet_hours else None,
        )
        return SubscriptionView.of(await flows.manage.manage_update(context, token, preferences, client))

    @router.delete("/manage/{token}", summary="Cancel the subscription")
    async def manage_cancel(token: str, client: ClientAddress) -> SubscriptionView:
        return SubscriptionView.of(await flows.manage.manage_cancel(context, token, client))

    @router.get("/unsubscribe/{token}", response_class=HTMLResponse, summary="Confirmation page for stopping emails")
    async def unsubscribe_page(token: str, request: Request) -> Response:
        try:
            subscription = await flows.manage.check_unsubscribe_token(context, token)
        except SubscriptionError as problem:
            return pages.error_page(request, problem)
        language = pages.language(request, subscription.language)
        hidden = [(ONE_CLICK_FIELD, ONE_CLICK_VALUE)]
        return pages.render(
            request, "message", language, page="unsubscribe", action=str(request.url.path), hidden=hidden, home=False
        )

    @router.post(
        "/unsubscribe/{token}",
        response_class=HTMLResponse,
        summary="RFC 8058 one-click unsubscribe from emails",
        description="What a mail provider posts for the List-Unsubscribe-Post header: the form field "
        "`List-Unsubscribe=One-Click`, no cookies. The token is the link's own; a token that is not (or no longer) "
        "valid gets the 404 page.",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/x-www-form-urlencoded": {
                        "schema": {
                            "type": "object",
                            "required": [ONE_CLICK_FIELD],
                            "properties": {ONE_CLICK_FIELD: {"type": "string", "enum": [ONE_CLICK_VALUE]}},
                        }
                    }
                },
            }
        },
        responses=problem_responses(
            {404: [NotFoundError.code], 422: [ProblemCode.NOT_ONE_CLICK]}, media_type="text/html"
        ),
    )
    async def unsubscribe(token: str, request: Request) -> Response:
        # RFC 8058: the mail provider posts this without our cookies, so the link's own token is the only check.
        form = await request.form()
        if form.get(ONE_CLICK_FIELD) != ONE_CLICK_VALUE:
            refusal = InvalidRequestError(
                f"expected the form field {ONE_CLICK_FIELD}={ONE_CLICK_VALUE}", code=ProblemCode.NOT_ONE_CLICK
            )
            return pages.error_page(request, refusal)
        try:
            subscription = await flows.manage.unsubscribe_email(context, token)
        except SubscriptionError as problem:
            return pages.error_page(request, problem)
        language = pages.language(request, subscription.language)
        return pages.render(request, "message", language, page="unsubscribed", action=None, hidden=[], home=False)

    @router.post(
        flows.inbound_sms.INBOUND_SMS_PATH.removeprefix("/v1"),
        summary="Twilio inbound SMS webhook (STOP, START, HELP, acknowledgements)",
        response_class=Response,
        responses={200: {"content": {"application/xml": {}}}},
    )
    async def inbound_sms(params: TwilioForm) -> Response:
        twiml = await flows.inbound_sms.inbound_sms(context, params)
        return Response(twiml, media_type="application/xml")

    @router.get(
        "/agencies/{agency_id}/cases/{kind}/{value}/status",
        tags=["lookup"],
        summary="What the agency last reported about a case (nothing for sealed cases)",
    )
    async def lookup(
        agency_id: Annotated[str, Path(min_length=1, max_length=64, pattern=AGENCY_PATTERN)],
        kind: IdentifierKind,
        value: str,
        client: ClientAddress,
    ) -> CustodyStatusView:
        if not value.strip() or len(value) > 64:
            raise InvalidRequestError("the case identifier must have 1 to 64 characters")
        identifier = SubjectIdentifier(kind=kind, value=value)
        view = await flows.lookup.lookup(context, agency_id, identifier, client)
        return CustodyStatusView(
            agency_id=agency_id,
            identifier=IdentifierBody(kind=kind, value=value),
            status=view.status,
            effective_at=view.effective_at,
            facility=view.facility,
        )

    @router.get(
        "/agencies/{agency_id}/people",
        tags=["lookup"],
        summary="Search by name, where the agency allows it: held now or released in the last 30 days, never sealed",
    )
    async def people(
        agency_id: Annotated[str, Path(min_length=1, max_length=64, pattern=AGENCY_PATTERN)],
        last_name: Annotated[str, Query(min_length=1, max_length=100)],
        client: ClientAddress,
        first_name: Annotated[str, Query(max_length=100, description="Or a date_of_birth instead")] = "",
        date_of_birth: Annotated[date | None, Query(description="YYYY-MM-DD; or a first_name instead")] = None,
    ) -> PeopleView:
        found = await flows.lookup.search_by_name(
            context, agency_id, last_name, first_name, client, birth_date=date_of_birth
        )
        return PeopleView(
            people=[
                PersonView(
                    display_name=match.display_name,
                    status=match.status,
                    effective_at=match.effective_at,
                    facility=match.facility,
                    identifier=IdentifierBody(kind=match.identifier.kind, value=match.identifier.value),
                )
                for match in found
            ]
        )

    return router
