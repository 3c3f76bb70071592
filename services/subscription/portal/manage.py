"""The manage link's pages: enter the codes, see the subscription in words, change it, new link, cancel. Each change
is a POST checked by its CSRF token and the link, answered by a redirect."""

from __future__ import annotations

from typing import Literal, get_args

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from services.subscription import flows
from services.subscription.deps import client_key
from services.subscription.domain.errors import (
    ConflictError,
    GoneError,
    InvalidContactError,
    InvalidRequestError,
    SubscriptionError,
    TooManyRequestsError,
)
from services.subscription.domain.subscription import Subscription
from services.subscription.flows.context import Context
from services.subscription.portal.case import case_context
from services.subscription.portal.forms import (
    AddContactForm,
    CodeForm,
    FieldError,
    OptionsForm,
    pin_errors,
)
from services.subscription.portal.views import Linked, Posted, Views
from services.subscription.portal.web import Pages
from shared.vocabulary import Channel, Language

PortalChannel = Literal[Channel.SMS, Channel.EMAIL, Channel.VOICE]
"""The channels a victim can add on these pages (a number for calls also needs a PIN: chosen when registering)."""
DONE = frozenset({"active", "verified", "changed", "unchanged", "cancelled", "contact_added", "contact_removed"})


def manage_router(context: Context, pages: Pages) -> APIRouter:  # noqa: PLR0915 - one route each
    router = APIRouter(include_in_schema=False)
    views = Views(context, pages)

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
            verified = await flows.verify.verify_code(
                context, subscription.subscription_id, token, channel, form.code, client=client_key(request)
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
            await flows.verify.resend(context, subscription.subscription_id, token, channel, client_key(request))
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
            summary=views.summary(
                language,
                agency_name=await views.agency_name(subscription.agency_id),
                kind=subscription.identifier.kind.value,
                number=subscription.identifier.value,
                contacts=contact_state(subscription),
                options=options,
                change=False,
            ),
            addable=[channel.value for channel in get_args(PortalChannel) if not subscription.has(channel)],
            removable=[c.channel.value for c in subscription.contacts if len(working) > 1 or c not in working],
            **await case_context(context, subscription),
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
            **views.options_context(language, form, subscription.timezone),
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
        preferences = flows.manage.Preferences(
            language=Language(form.language),
            timezone=form.timezone,
            event_types=form.chosen_events(),
            quiet_hours=form.quiet_hours(),
        )
        try:
            changed = await flows.manage.manage_update(context, token, preferences, client_key(request))
        except SubscriptionError as problem:
            return pages.error_page(request, problem, subscription.language)
        done = "unchanged" if changed.version == subscription.version else "changed"
        return pages.redirect(f"/manage/{token}?done={done}")

    @router.get("/manage/{token}/contacts/{channel}")
    async def add_contact(request: Request, subscription: Linked, token: str, channel: PortalChannel) -> Response:
        if subscription.has(channel):
            return RedirectResponse(f"/manage/{token}", status_code=303)
        language = pages.language(request, subscription.language)
        base = f"/manage/{token}"
        return pages.render(request, "add_contact", language, base=base, channel=channel.value, form=AddContactForm())

    @router.post("/manage/{token}/contacts/{channel}")
    async def add_contact_post(
        request: Request, fields: Posted, subscription: Linked, token: str, channel: PortalChannel
    ) -> Response:
        form = AddContactForm.model_validate(fields)

        def refused(errors: list[FieldError], status_code: int) -> Response:
            return pages.render(
                request,
                "add_contact",
                pages.language(request, subscription.language),
                status_code=status_code,
                base=f"/manage/{token}",
                channel=channel.value,
                form=form.model_copy(update={"pin": ""}),  # a PIN is never shown back
                errors=errors,
            )

        pin = form.typed_pin() if channel is Channel.VOICE else None
        if pin is not None and (errors := pin_errors(pin)):
            return refused(errors, 422)
        try:
            changed = await flows.manage.add_contact(context, token, channel, form.value, client_key(request), pin=pin)
        except (InvalidContactError, TooManyRequestsError) as problem:
            key = "value.too_many" if isinstance(problem, TooManyRequestsError) else f"value.invalid_{channel}"
            return refused([FieldError(field="value", key=key)], problem.status_code)
        except SubscriptionError as problem:
            return pages.error_page(request, problem, subscription.language)
        if changed.contact(channel).verified:  # the subscription's verified SMS number: nothing to confirm
            return pages.redirect(f"/manage/{token}?done=verified")
        return pages.redirect(f"/manage/{token}/code/{channel}")

    @router.post("/manage/{token}/contacts/{channel}/remove")
    async def remove_contact(
        request: Request, _csrf: Posted, subscription: Linked, token: str, channel: Channel
    ) -> Response:
        try:
            await flows.manage.remove_contact(context, token, channel, client_key(request))
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
            await flows.manage.renew_manage_link(context, token, client_key(request))
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
            await flows.manage.manage_cancel(context, token, client_key(request))
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
