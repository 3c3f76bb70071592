"""HTTP routes: parse the request, call the use case, shape the answer."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse

from services.subscription import pages
from services.subscription.domain.errors import InvalidRequestError, SubscriptionError
from services.subscription.schemas import (
    AGENCY_PATTERN,
    CreatedView,
    CustodyStatusView,
    IdentifierBody,
    PreferencesPatch,
    Problem,
    ResendRequest,
    SubscribeRequest,
    SubscriptionView,
    VerifyRequest,
)
from services.subscription.service import INBOUND_SMS_PATH, NewSubscription, Preferences, SubscriptionService
from shared.events import SubjectIdentifier
from shared.vocabulary import IdentifierKind

PROBLEMS: dict[int | str, dict[str, object]] = {
    code: {"model": Problem} for code in (400, 401, 403, 404, 409, 410, 422, 429)
}


def problem_response(problem: SubscriptionError) -> JSONResponse:
    headers = {"Retry-After": str(problem.retry_after)} if problem.retry_after is not None else None
    return JSONResponse({"detail": problem.detail}, status_code=problem.status_code, headers=headers)


def html_problem(problem: SubscriptionError) -> HTMLResponse:
    headers = {"Retry-After": str(problem.retry_after)} if problem.retry_after is not None else None
    return HTMLResponse(pages.problem_page(problem.detail), status_code=problem.status_code, headers=headers)


def client_key(request: Request) -> str:
    """The caller's address; X-Forwarded-For is believed only as far as our own proxies append to it."""
    hops: int = request.app.state.trusted_proxy_hops
    if hops > 0:
        forwarded = [part.strip() for part in request.headers.get("x-forwarded-for", "").split(",") if part.strip()]
        if len(forwarded) >= hops:
            return forwarded[-hops]
    return request.client.host if request.client else "unknown"


def bearer_token(authorization: Annotated[str | None, Header()] = None) -> str | None:
    if authorization is None:
        return None
    scheme, _, token = authorization.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


ClientAddress = Annotated[str, Depends(client_key)]
ManageToken = Annotated[str | None, Depends(bearer_token)]


def create_router(service: SubscriptionService) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["subscriptions"], responses=PROBLEMS)

    @router.post("/subscriptions", status_code=201, summary="Subscribe to a case at an agency")
    async def subscribe(body: SubscribeRequest, client: ClientAddress) -> CreatedView:
        created = await service.subscribe(
            NewSubscription(
                agency_id=body.agency_id,
                identifier=SubjectIdentifier(kind=body.identifier.kind, value=body.identifier.value),
                sms=body.sms,
                email=body.email,
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
        return SubscriptionView.of(await service.verify_code(subscription_id, token, body.channel, body.code, client))

    @router.post("/subscriptions/{subscription_id}/resend", status_code=202, summary="Send a new verification code")
    async def resend(
        subscription_id: str,
        body: ResendRequest,
        token: ManageToken,
        client: ClientAddress,
    ) -> SubscriptionView:
        return SubscriptionView.of(await service.resend(subscription_id, token, body.channel, client))

    @router.get("/verify", response_class=HTMLResponse, summary="Verify an email address from the emailed link")
    async def verify_link(token: Annotated[str, Query(max_length=1024)]) -> HTMLResponse:
        try:
            subscription = await service.verify_link(token)
        except SubscriptionError as problem:
            return html_problem(problem)
        return HTMLResponse(pages.page("verified", subscription.language))

    @router.get("/manage/{token}", summary="See your subscription (private link)")
    async def manage_view(token: str, client: ClientAddress) -> SubscriptionView:
        return SubscriptionView.of(await service.manage_view(token, client))

    @router.patch("/manage/{token}", summary="Change language, time zone, events or quiet hours")
    async def manage_update(token: str, body: PreferencesPatch, client: ClientAddress) -> SubscriptionView:
        preferences = Preferences(
            language=body.language,
            timezone=body.timezone,
            event_types=body.event_types,
            quiet_hours=(body.quiet_hours.start, body.quiet_hours.end) if body.quiet_hours else None,
        )
        return SubscriptionView.of(await service.manage_update(token, preferences, client))

    @router.delete("/manage/{token}", summary="Cancel the subscription")
    async def manage_cancel(token: str, client: ClientAddress) -> SubscriptionView:
        return SubscriptionView.of(await service.manage_cancel(token, client))

    @router.get("/unsubscribe/{token}", response_class=HTMLResponse, summary="Confirmation page for stopping emails")
    async def unsubscribe_page(token: str, request: Request) -> HTMLResponse:
        try:
            subscription = await service.check_unsubscribe_token(token)
        except SubscriptionError as problem:
            return html_problem(problem)
        return HTMLResponse(pages.page("unsubscribe", subscription.language, action=str(request.url.path)))

    @router.post(
        "/unsubscribe/{token}", response_class=HTMLResponse, summary="RFC 8058 one-click unsubscribe from emails"
    )
    async def unsubscribe(token: str, request: Request) -> HTMLResponse:
        form = await request.form()
        if form.get("List-Unsubscribe") != "One-Click":
            return html_problem(InvalidRequestError("expected the form field List-Unsubscribe=One-Click"))
        try:
            subscription = await service.unsubscribe_email(token)
        except SubscriptionError as problem:
            return html_problem(problem)
        return HTMLResponse(pages.page("unsubscribed", subscription.language))

    @router.post(
        INBOUND_SMS_PATH.removeprefix("/v1"),
        summary="Twilio inbound SMS webhook (STOP, START, HELP, acknowledgements)",
        response_class=Response,
        responses={200: {"content": {"application/xml": {}}}},
    )
    async def inbound_sms(request: Request, x_twilio_signature: Annotated[str | None, Header()] = None) -> Response:
        form = await request.form()
        params = {name: value for name, value in form.items() if isinstance(value, str)}
        twiml = await service.inbound_sms(params, x_twilio_signature)
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
        view = await service.lookup(agency_id, identifier, client)
        return CustodyStatusView(
            agency_id=agency_id,
            identifier=IdentifierBody(kind=kind, value=value),
            status=view.status,
            effective_at=view.effective_at,
            facility=view.facility,
        )

    return router
