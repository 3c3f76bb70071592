"""Problems a request can run into; each carries the HTTP status and a message a frightened person can act on."""

from __future__ import annotations


class SubscriptionError(Exception):
    status_code = 400

    def __init__(self, detail: str, *, retry_after: int | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.retry_after = retry_after


class InvalidContactError(SubscriptionError):
    status_code = 422


class InvalidRequestError(SubscriptionError):
    status_code = 422


class NotFoundError(SubscriptionError):
    status_code = 404


class ConflictError(SubscriptionError):
    status_code = 409


class CancelledError(ConflictError):
    """The subscription was cancelled: nothing more can be done with it."""


class GoneError(SubscriptionError):
    status_code = 410


class ForbiddenError(SubscriptionError):
    status_code = 403


class UnauthorizedError(SubscriptionError):
    status_code = 401


class TooManyRequestsError(SubscriptionError):
    status_code = 429
