"""An agency as ingest keeps it: one pydantic model from which the table's column list, the editable fields, the
admin API's schemas and the published ``agency.profile`` are all derived (pure: no I/O).

Adding a field to an agency takes a migration (the column, with the same default) and the field on
:class:`AgencyEditable` (set by the admin API) or :class:`Agency` (kept by the service); nothing else repeats it. If
victims' services need it too, add it to ``shared.events.AgencyProfile`` as well: :func:`profile_of` copies every
field the profile has.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, HttpUrl

from services.ingest.domain.records import (
    DEFAULT_CSV_COLUMNS,
    DEFAULT_STATUS_MAP,
    StatusMap,
    parse_csv_columns,
    parse_status_map,
)
from services.ingest.storm_holds.domain import StormPolicy
from shared.events import AgencyProfile, AgencyResources, ReminderPolicy


def _known_zone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown IANA time zone {name!r} (for example 'America/Chicago')") from None
    return name


AgencyIdText = Annotated[
    str, Field(pattern=r"^[a-z0-9][a-z0-9-]{1,62}$", description="Lower-case letters, digits, dashes.")
]
TimeZoneName = Annotated[str, AfterValidator(_known_zone)]
Phone = Annotated[str, Field(min_length=3, max_length=32, pattern=r"^\+?[0-9 ().-]+$")]
StatusMapIn = Annotated[StatusMap, AfterValidator(parse_status_map)]
CsvColumns = Annotated[dict[str, str], AfterValidator(parse_csv_columns)]


class AgencyEditable(BaseModel):
    """What the admin API (and the operator CLI) set on an agency; each default is its column's default."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    timezone: TimeZoneName
    contact_phone: Phone | None = None
    victim_services_phone: Phone | None = None
    victim_services_url: HttpUrl | None = None
    expected_feed_interval_minutes: int = Field(default=60, ge=1, le=10_080)
    notices_paused: bool = False
    active: bool = True
    status_map: StatusMapIn = Field(
        default_factory=lambda: dict(DEFAULT_STATUS_MAP),
        description="Agency status code -> canonical status (and release reason).",
    )
    csv_columns: CsvColumns = Field(
        default_factory=lambda: dict(DEFAULT_CSV_COLUMNS), description="Canonical CSV field -> the agency's header."
    )
    storm_window_minutes: int = Field(
        default=10, ge=1, le=1440, description="Storm guard: the window urgent changes are counted in (default 10)."
    )
    storm_population_share: float = Field(
        default=0.1,
        gt=0,
        le=1,
        description="Storm guard: more urgent changes in the window than this share of the people in custody is a "
        "storm (default 0.1).",
    )
    storm_min_changes: int = Field(
        default=50, ge=1, le=1_000_000, description="Storm guard: never a storm at or below this many (default 50)."
    )
    storm_rate_multiple: float = Field(
        default=10.0,
        ge=1,
        le=1_000_000,
        description="Storm guard: a storm is also more than this multiple of the usual count per window, over the "
        "last 7 days (default 10).",
    )
    silence_notice_after_minutes: int | None = Field(
        default=None,
        ge=1,
        le=43_200,
        description="After this many minutes without a feed, subscribers of people in custody are told their "
        "status cannot be confirmed right now; null (the default) never tells them.",
    )
    public_name_search: bool = Field(
        default=False,
        description="Victims without a number may search by name the people this agency holds or released in the "
        "last 30 days (never a sealed one); off unless set.",
    )
    reminders: ReminderPolicy = Field(
        default_factory=ReminderPolicy,
        description="When subscribers are reminded of a scheduled release or court date.",
    )


class AgencySettings(AgencyEditable):
    """Everything an admin decides about an agency: the editable fields and its contacts and referrals (replaced
    whole through their own endpoint, which validates them as ``ResourcesIn``)."""

    resources: AgencyResources = Field(default_factory=AgencyResources)


class NewAgency(AgencySettings):
    agency_id: AgencyIdText


class AgencyView(NewAgency):
    """An agency with its id and times: all that may be shown of it."""

    created_at: datetime
    updated_at: datetime


class Agency(AgencyView):
    """An agency as stored: also the feed state the service itself keeps."""

    model_config = ConfigDict(frozen=True)

    last_feed_at: datetime | None = None
    feed_stale: bool = False
    silence_notified_for: datetime | None = Field(
        default=None, description="The silence victims were last told about (its last_feed_at): once per outage."
    )

    @property
    def storm_policy(self) -> StormPolicy:
        return StormPolicy(
            window_minutes=self.storm_window_minutes,
            population_share=self.storm_population_share,
            min_changes=self.storm_min_changes,
            rate_multiple=self.storm_rate_multiple,
        )


AGENCY_COLUMNS = ", ".join(Agency.model_fields)
SETTINGS_COLUMNS = tuple(AgencySettings.model_fields)


def profile_of(agency: Agency) -> AgencyProfile:
    """The agency's published profile: every field ``AgencyProfile`` has, taken from the agency."""
    return AgencyProfile.model_validate(agency.model_dump(mode="json", include=set(AgencyProfile.model_fields)))
