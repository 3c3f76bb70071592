"""What several portal pages show: the choices of time zone and events, a subscription (or the answers) in words,
and the dependencies that check a form's CSRF token and a manage link."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request

from services.subscription import flows
from services.subscription.deps import client_key
from services.subscription.domain.errors import NotFoundError, SubscriptionError
from services.subscription.domain.subscription import ALL_EVENT_TYPES, Subscription
from services.subscription.flows.context import Context
from services.subscription.portal.forms import OptionsForm
from services.subscription.portal.web import Pages, PortalRefusal
from shared.vocabulary import Language

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


@dataclass(frozen=True)
class Views:
    context: Context
    pages: Pages

    def timezone_options(self, language: Language, *extra: str) -> list[tuple[str, str]]:
        words = self.pages.renderer.words(language)
        return [(zone, words.get(f"tz.{zone}", zone)) for zone in dict.fromkeys((*extra, *TIMEZONES))]

    def event_options(self, language: Language) -> list[tuple[str, str, None]]:
        words = self.pages.renderer.words(language)
        return [(str(status), words[f"event.{status}"], None) for status in ALL_EVENT_TYPES]

    def options_context(self, language: Language, form: OptionsForm, agency_timezone: str) -> dict[str, Any]:
        return {
            "form": form,
            "timezones": self.timezone_options(language, agency_timezone, form.timezone),
            "event_options": self.event_options(language),
        }

    def summary(
        self,
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
            "timezone_name": self.pages.renderer.words(language).get(f"tz.{options.timezone}", options.timezone),
            "event_types": options.event_types,
            "all_events": len(options.event_types) == len(ALL_EVENT_TYPES),
            "quiet_start": options.quiet_start if options.quiet == "on" else "",
            "quiet_end": options.quiet_end if options.quiet == "on" else "",
            "change": change,
        }

    async def agency_name(self, agency_id: str) -> str:
        try:
            return (await flows.lookup.agency(self.context, agency_id)).name
        except NotFoundError:
            return agency_id


def views_of(request: Request) -> Views:
    views: Views = request.app.state.portal
    return views


async def posted(request: Request) -> dict[str, Any]:
    """The posted fields of a form whose CSRF token is good, or the refusal page."""
    return await views_of(request).pages.posted(request)


async def linked(request: Request, token: str) -> Subscription:
    """The subscription of the manage link in the path, or its problem page."""
    views = views_of(request)
    try:
        return await flows.manage.manage_view(views.context, token, client_key(request))
    except SubscriptionError as problem:
        raise PortalRefusal(views.pages.error_page(request, problem)) from None


Posted = Annotated[dict[str, Any], Depends(posted)]
Linked = Annotated[Subscription, Depends(linked)]
