"""What anyone may ask: the agencies, a case's latest status, a search by name where the agency allows it, an
agency's contacts and referrals; and what only a verified subscriber sees: the case file."""

from __future__ import annotations

from datetime import date

from services.subscription.domain.agency import Agency
from services.subscription.domain.case import CaseFile, CustodyView, may_see_case
from services.subscription.domain.errors import ConflictError, InvalidRequestError, NotFoundError, ProblemCode
from services.subscription.domain.names import MAX_RESULTS, RELEASED_WITHIN, NameMatch, name_words
from services.subscription.domain.subscription import Subscription
from services.subscription.flows.context import Context
from services.subscription.flows.limits import ClientLimit, count_client
from services.subscription.store import agencies, custody
from shared.events import AgencyResources, SubjectIdentifier
from shared.vocabulary import normalise_identifier


def unknown_agency(agency_id: str) -> NotFoundError:
    return NotFoundError(f"unknown agency {agency_id[:64]!r}: check the agency id", code=ProblemCode.UNKNOWN_AGENCY)


async def active_agencies(context: Context) -> list[Agency]:
    """The agencies taking subscriptions, by name (for the portal's list)."""
    async with context.pool.acquire() as connection:
        return await agencies.active_agencies(connection)


async def agency(context: Context, agency_id: str) -> Agency:
    async with context.pool.acquire() as connection:
        found = await agencies.get_agency(connection, agency_id)
    if found is None:
        raise unknown_agency(agency_id)
    return found


async def require_active_agency(context: Context, agency_id: str) -> Agency:
    found = await agency(context, agency_id)
    if not found.active:
        raise ConflictError(f"{found.name} does not take subscriptions at the moment", code=ProblemCode.AGENCY_CLOSED)
    return found


async def lookup(context: Context, agency_id: str, identifier: SubjectIdentifier, client: str) -> CustodyView:
    await count_client(context, ClientLimit.LOOKUP, client)
    normalised = SubjectIdentifier(kind=identifier.kind, value=normalise_identifier(identifier.value))
    async with context.pool.acquire() as connection:
        if await agencies.get_agency(connection, agency_id) is None:
            raise unknown_agency(agency_id)
        view = await custody.custody_status(connection, agency_id, normalised)
    if view is None:
        raise NotFoundError("no custody information for this case")
    return view


async def search_by_name(
    context: Context, agency_id: str, last_name: str, first_name: str, client: str, *, birth_date: date | None = None
) -> list[NameMatch]:
    """People an agency that allows it holds now or released in the last 30 days, by last name and first name
    or date of birth (or both); never a sealed one; at most ten; the same rate limit as the lookup."""
    await count_client(context, ClientLimit.LOOKUP, client)
    last, first = name_words(last_name), name_words(first_name)
    if not last or not (first or birth_date):
        raise InvalidRequestError("give a last name, and a first name or a date of birth")
    async with context.pool.acquire() as connection:
        found = await agencies.get_agency(connection, agency_id)
        if found is None or not found.public_name_search:
            raise NotFoundError("this agency does not offer a search by name")
        released_since = context.now() - RELEASED_WITHIN
        return await custody.people_named(
            connection, agency_id, sorted({*last, *first}), released_since, MAX_RESULTS, birth_date=birth_date
        )


async def agency_resources(context: Context, agency_id: str) -> AgencyResources:
    async with context.pool.acquire() as connection:
        return await agencies.agency_resources(connection, agency_id)


async def case_file(context: Context, subscription: Subscription) -> CaseFile | None:
    """The case information and history a subscriber may see; None when they may not, or when there is none."""
    if not may_see_case(subscription):
        return None
    async with context.pool.acquire() as connection:
        return await custody.case_file(connection, subscription.agency_id, subscription.identifier)
