"""Who is using the console: the API key a person logged in with, kept in a cookie.

The cookie holds the key itself (HttpOnly, so no script reads it; SameSite=Strict, so no other
site's page sends it; scoped to ``/console``), which makes a console session exactly as
powerful as the key and ended by revoking it, with no second credential store to keep in step.
Every action is a POST carrying a token derived from the key by HMAC: a page of another origin
can neither read it nor guess it, so a forged form is refused even by a browser that ignores
SameSite.
"""

from __future__ import annotations

import hashlib
import hmac

from fastapi import Request, Response

from jobengine.api.auth import key_for
from jobengine.api.errors import ApiError, Forbidden
from jobengine.api.keys import ApiKey
from jobengine.api.state import api_state
from jobengine.audit.rest import remember_key

COOKIE = "jobengine_console"
PATH = "/console"


class LoginRequired(ApiError):
    """Sends the browser to the login page; an action answers 401 with this message."""

    status = 401
    code = "LOGIN_REQUIRED"
    hint = "Log in at /console/login with an API key (`jobengine keys create`)."


def csrf_token(plaintext: str) -> str:
    return hmac.new(plaintext.encode(), b"jobengine-console-csrf", hashlib.sha256).hexdigest()


def current_key(request: Request) -> ApiKey:
    """The logged-in key, or ``LoginRequired`` when there is none or it was revoked."""
    token = request.cookies.get(COOKIE)
    if not token:
        raise LoginRequired("not logged in to the console")
    try:
        key = key_for(api_state(request), token)
    except ApiError as exc:
        raise LoginRequired(f"the console's key no longer works: {exc.message}") from None
    remember_key(request, key)  # the audit log names it, a refusal included
    return key


def check_csrf(request: Request, sent: str | None) -> None:
    token = request.cookies.get(COOKIE, "")
    if not sent or not hmac.compare_digest(sent, csrf_token(token)):
        raise Forbidden(
            "the form's CSRF token is missing or does not match this session",
            hint="Reload the page and submit its form again.",
        )


def check_origin(request: Request) -> None:
    """A login posted from another site's page is refused: it would sign the browser in with
    someone else's key, and what the person then does would be recorded under that key."""
    origin = request.headers.get("origin")
    if origin is not None and origin != f"{request.url.scheme}://{request.url.netloc}":
        raise Forbidden(
            f"a login form was posted from another origin ({origin[:100]})",
            hint="Log in from the console's own login page.",
        )


def remember(response: Response, plaintext: str, *, secure: bool) -> None:
    response.set_cookie(
        COOKIE, plaintext, httponly=True, samesite="strict", path=PATH, secure=secure
    )


def forget(response: Response) -> None:
    response.delete_cookie(COOKIE, path=PATH, httponly=True, samesite="strict")
