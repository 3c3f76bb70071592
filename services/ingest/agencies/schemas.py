"""The admin API's agency models, derived from the agency model: a field added there appears here by itself."""

from __future__ import annotations

from typing import Annotated, Any, get_args

from pydantic import BaseModel, ConfigDict, Field, HttpUrl, create_model, model_validator

from services.ingest.agencies.domain import AgencyEditable, AgencyIdText, AgencyView, Phone
from shared.events import AgencyResources
from shared.vocabulary import ContactRole, Language, ReferralCategory

Email = Annotated[str, Field(max_length=254, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")]


class AgencyCreate(AgencyEditable):
    """A new agency; a field left out takes its default (the default status map and CSV columns included)."""

    agency_id: AgencyIdText


def _partial(model: type[BaseModel], name: str) -> type[BaseModel]:
    """``model`` with every field optional (default None), keeping each field's constraints for the values given."""
    fields: dict[str, Any] = {}
    for field_name, info in model.model_fields.items():
        annotation: Any = Annotated[(info.annotation, *info.metadata)] if info.metadata else info.annotation
        fields[field_name] = (annotation | None, Field(default=None, description=info.description))
    return create_model(name, __config__=ConfigDict(extra="forbid"), **fields)


class AgencyUpdate(_partial(AgencyEditable, "AgencyUpdate")):  # type: ignore[misc]  # a base built at import time
    """Only the fields given change. A field the agency must have (``NOT_NULL``) cannot be set to null."""


NOT_NULL = tuple(
    name for name, info in AgencyEditable.model_fields.items() if type(None) not in get_args(info.annotation)
)


class AgencyOut(AgencyView):
    """An agency as the admin API shows it."""


class ContactIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    role: ContactRole
    name: str = Field(min_length=1, max_length=200)
    phone: Phone | None = None
    email: Email | None = None
    hours: str | None = Field(default=None, max_length=200)
    languages: list[Language] = Field(default_factory=list)


class ReferralIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: str = Field(min_length=1, max_length=200)
    category: ReferralCategory
    phone: Phone | None = None
    url: HttpUrl | None = None
    languages: list[Language] = Field(default_factory=list)
    hours: str | None = Field(default=None, max_length=200)
    description: str | None = Field(default=None, max_length=500)


class ResourcesIn(BaseModel):
    """An agency's local contacts and referral services; at most one hotline (urgent notices name it)."""

    model_config = ConfigDict(extra="forbid")

    contacts: list[ContactIn] = Field(default_factory=list, max_length=20)
    referrals: list[ReferralIn] = Field(default_factory=list, max_length=50)

    @model_validator(mode="after")
    def _one_hotline(self) -> ResourcesIn:
        if sum(1 for contact in self.contacts if contact.role is ContactRole.HOTLINE) > 1:
            raise ValueError("give at most one contact with role 'hotline'")
        return self

    def published(self) -> AgencyResources:
        return AgencyResources.model_validate(self.model_dump(mode="json"))
