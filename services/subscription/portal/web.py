"""What every portal page needs: the language (``?lang=`` then cookie), CSRF tokens (a random cookie and its
signed copy in each form), the encrypted draft of a registration, and rendering with the words of the language."""

from __future__ import annotations

import secrets
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from itsdangerous import BadSignature, URLSafeSerializer
from pydantic import ValidationError

from services.subscription.domain.errors import (
    CancelledError,
    ConflictError,
    GoneError,
    SubscriptionError,
    TooManyRequestsError,
)
from services.subscription.portal.forms import Draft
from services.subscription.rendering import LANGUAGES, Renderer
from shared.crypto import ContactCipher, ContactDecryptError
from shared.vocabulary import Language

LANGUAGE_COOKIE = "cw_lang"
CSRF_COOKIE = "cw_csrf"
DRAFT_COOKIE = "cw_draft"
CSRF_FIELD = "csrf_token"
YEAR = 365 * 24 * 3600


class PortalRefusal(Exception):  # noqa: N818 - a refusal, answered with its page
    """Stops a route with the page that says why (a missing CSRF token, a manage link that does not work)."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.status_code)
        self.response = response


async def refusal_page(_: Request, error: Exception) -> Response:
    assert isinstance(error, PortalRefusal)  # noqa: S101 - registered for this type only
    return error.response


def problem_key(problem: SubscriptionError) -> str:
    """Which problem page explains an error from the service, in the person's language."""
    if isinstance(problem, TooManyRequestsError):
        return "too_many"
    if isinstance(problem, GoneError):
        return "expired"
    if isinstance(problem, CancelledError):
        return "cancelled"
    if isinstance(problem, ConflictError):
        return "used"
    if problem.status_code in {401, 403, 404}:
        return "link"
    return "invalid"


class Pages:
    def __init__(self, renderer: Renderer, secret: str, cipher: ContactCipher, *, secure_cookies: bool) -> None:
        """``secure_cookies``: the portal is served over https (a proxy may end TLS, so the request cannot tell)."""
        self._secure = secure_cookies
        self.renderer = renderer
        self._csrf = URLSafeSerializer(secret, salt="custody-watch.portal.csrf")
        self._cipher = cipher

    def language(self, request: Request, fallback: Language | None = None) -> Language:
        for candidate in (request.query_params.get("lang"), request.cookies.get(LANGUAGE_COOKIE)):
            if candidate in {code for code, _ in LANGUAGES}:
                return Language(candidate)
        if fallback is not None:
            return fallback
        accepted = request.headers.get("accept-language", "").lower()
        return Language.SPANISH if accepted.startswith("es") else Language.ENGLISH

    def render(
        self, request: Request, name: str, language: Language, *, status_code: int = 200, **context: Any
    ) -> HTMLResponse:
        csrf_cookie = request.cookies.get(CSRF_COOKIE) or secrets.token_urlsafe(24)
        path = request.url.path
        switch = {code: f"{path}?lang={code}" for code, _ in LANGUAGES}
        document = self.renderer.page(
            name, language, csrf_token=self._csrf.dumps(csrf_cookie), switch=switch, **context
        )
        response = HTMLResponse(document, status_code=status_code, headers={"Cache-Control": "no-store"})
        secure = self._secure
        if request.cookies.get(CSRF_COOKIE) != csrf_cookie:
            response.set_cookie(CSRF_COOKIE, csrf_cookie, httponly=True, samesite="lax", secure=secure)
        if request.query_params.get("lang") == language.value:
            response.set_cookie(LANGUAGE_COOKIE, language.value, max_age=YEAR, samesite="lax", secure=secure)
        return response

    def problem(self, request: Request, key: str, status_code: int, language: Language | None = None) -> HTMLResponse:
        return self.render(
            request,
            "message",
            language or self.language(request),
            status_code=status_code,
            page=f"problem.{key}",
            action=None,
            hidden=[],
            home=True,
        )

    def error_page(self, request: Request, problem: SubscriptionError, language: Language | None = None) -> Response:
        response = self.problem(request, problem_key(problem), problem.status_code, language)
        if problem.retry_after is not None:
            response.headers["Retry-After"] = str(problem.retry_after)
        return response

    async def form(self, request: Request) -> dict[str, Any] | None:
        """The posted fields, or None when the CSRF token is missing or does not match this browser's cookie."""
        data = await request.form()
        token, cookie = data.get(CSRF_FIELD), request.cookies.get(CSRF_COOKIE)
        if not isinstance(token, str) or not cookie:
            return None
        try:
            signed = self._csrf.loads(token)
        except BadSignature:
            return None
        if not isinstance(signed, str) or not secrets.compare_digest(signed, cookie):
            return None
        fields: dict[str, Any] = {key: value for key, value in data.items() if isinstance(value, str)}
        fields["event_types"] = [value for value in data.getlist("event_types") if isinstance(value, str)]
        return fields

    def csrf_refused(self, request: Request) -> HTMLResponse:
        return self.problem(request, "expired_form", 403)

    async def posted(self, request: Request) -> dict[str, Any]:
        """A dependency: the posted fields of a form whose CSRF token is good, or the refusal page."""
        fields = await self.form(request)
        if fields is None:
            raise PortalRefusal(self.csrf_refused(request))
        return fields

    def draft(self, request: Request) -> Draft:
        sealed = request.cookies.get(DRAFT_COOKIE)
        if not sealed:
            return Draft()
        try:
            return Draft.model_validate_json(self._cipher.decrypt(sealed))
        except (ContactDecryptError, ValidationError, ValueError):
            return Draft()

    def redirect(self, url: str, *, draft: Draft | None = None, clear_draft: bool = False) -> RedirectResponse:
        """POST-redirect-GET (303), saving or clearing the registration draft."""
        response = RedirectResponse(url, status_code=303)
        if draft is not None:
            response.set_cookie(
                DRAFT_COOKIE,
                self._cipher.encrypt(draft.model_dump_json()),
                httponly=True,
                samesite="lax",
                secure=self._secure,
            )
        if clear_draft:
            response.delete_cookie(DRAFT_COOKIE)
        return response
