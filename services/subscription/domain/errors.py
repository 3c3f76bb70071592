"""Problems a request can run into; each carries the HTTP status and a message a frightened person can act on."""

from __future__ import annotations

from enum import StrEnum


class ProblemCode(StrEnum):
    """Codes more specific than an error class's own, where a program may want to tell them apart."""

    UNKNOWN_AGENCY = "unknown_agency"
    AGENCY_CLOSED = "agency_closed"
    NO_CONTACT = "no_contact"
    UNKNOWN_TIMEZONE = "unknown_timezone"
    NO_EVENT_TYPES = "no_event_types"
    PIN_WITHOUT_VOICE = "pin_without_voice"
    PIN_REQUIRED = "pin_required"
    INVALID_PIN = "invalid_pin"
    NOT_ONE_CLICK = "not_one_click"


class SubscriptionError(Exception):
    """``code`` names the problem for programs (the OpenAPI lists each route's codes); ``detail`` says it in words."""

    status_code = 400
    code = "bad_request"

    def __init__(self, detail: str, *, retry_after: int | None = None, code: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.retry_after = retry_after
        if code is not None:
            self.code = code


class InvalidContactError(SubscriptionError):
    status_code = 422
    code = "invalid_contact"


class InvalidRequestError(SubscriptionError):
    status_code = 422
    code = "invalid_request"


class NotFoundError(SubscriptionError):
    status_code = 404
    code = "not_found"


class ConflictError(SubscriptionError):
    status_code = 409
    code = "conflict"


class CancelledError(ConflictError):
    """The subscription was cancelled: nothing more can be done with it."""

    code = "cancelled"


class GoneError(SubscriptionError):
    status_code = 410
    code = "gone"


class ForbiddenError(SubscriptionError):
    status_code = 403
    code = "forbidden"


class UnauthorizedError(SubscriptionError):
    status_code = 401
    code = "unauthorized"


class TooManyRequestsError(SubscriptionError):
    status_code = 429
    code = "too_many_requests"
