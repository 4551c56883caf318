"""Who may call the API: bearer tokens, dashboard sessions (a cookie with CSRF protection), roles.

Two tokens, from the settings: ``TASK_API_TOKEN`` grants everything, ``TASK_API_READ_TOKEN`` the
``GET`` requests, without task arguments and results. A presented token is compared with both in
constant time. The dashboard trades a token for a session cookie: ``role.expiry.signature``,
signed with the token itself (HMAC-SHA256), so nothing is stored server-side and changing a
token ends its sessions. Its CSRF token is a second HMAC of the session, sent back by the page
in the ``X-CSRF-Token`` header on every request that changes something.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from dataclasses import dataclass
from enum import Enum

from fastapi import HTTPException, Request

#: The session cookie (``HttpOnly``) and the cookie the page reads its CSRF token from.
SESSION_COOKIE = "aum_session"
CSRF_COOKIE = "aum_csrf"
CSRF_HEADER = "X-CSRF-Token"
#: How long a dashboard session lasts.
SESSION_SECONDS = 12 * 3600
#: Methods that change nothing: the read-only token may use them, and they need no CSRF token.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class Role(str, Enum):
    """What a caller may do."""

    #: Everything; answers include task arguments and results.
    FULL = "full"
    #: ``GET`` requests; task arguments and results are left out.
    READ = "read"


@dataclass(frozen=True)
class Access:
    """The caller of one request, as :func:`authorize` found it."""

    role: Role
    #: Authenticated by the dashboard's session cookie (not a bearer token).
    by_cookie: bool = False

    @property
    def sees_arguments(self) -> bool:
        """Whether answers may include task arguments and results."""
        return self.role is Role.FULL


@dataclass(frozen=True, repr=False)
class Tokens:
    """The configured tokens (``None``: not set). Without a full token, nothing is checked."""

    full: str | None
    read: str | None = None

    @property
    def required(self) -> bool:
        """Whether requests must authenticate (``False`` only with ``--insecure-no-auth``)."""
        return self.full is not None

    def role_of(self, presented: str) -> Role | None:
        """The role ``presented`` grants, comparing it with every token in constant time."""
        given = presented.encode()
        is_full = hmac.compare_digest(given, (self.full or "").encode()) and self.full is not None
        is_read = hmac.compare_digest(given, (self.read or "").encode()) and self.read is not None
        return Role.FULL if is_full else Role.READ if is_read else None

    def open_session(self, role: Role, *, now: float | None = None) -> tuple[str, str]:
        """A session cookie value for ``role`` and its CSRF token."""
        expires = int((time.time() if now is None else now) + SESSION_SECONDS)
        payload = f"{role.value}.{expires}"
        session = f"{payload}.{self._sign(role, 'session', payload)}"
        return session, self.csrf_token(role, session)

    def session_role(self, session: str, *, now: float | None = None) -> Role | None:
        """The role of a session cookie still valid, or ``None``."""
        role_text, _, rest = session.partition(".")
        expires, _, signature = rest.partition(".")
        try:
            role = Role(role_text)
            expired = int(expires) < (time.time() if now is None else now)
        except ValueError:
            return None
        if self._key(role) is None or expired:
            return None
        expected = self._sign(role, "session", f"{role_text}.{expires}")
        return role if hmac.compare_digest(signature.encode(), expected.encode()) else None

    def csrf_token(self, role: Role, session: str) -> str:
        """The CSRF token that goes with ``session``."""
        return self._sign(role, "csrf", session)

    def _key(self, role: Role) -> str | None:
        return self.full if role is Role.FULL else self.read

    def _sign(self, role: Role, purpose: str, text: str) -> str:
        key = (self._key(role) or "").encode()
        digest = hmac.new(key, f"{purpose}|{text}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


async def authorize(request: Request) -> Access:
    """FastAPI dependency: the caller's access, or ``401``/``403``.

    A bearer token wins over a session cookie. The read-only role may only read; a request
    authenticated by the cookie that changes something must carry its CSRF token.
    """
    tokens: Tokens = request.app.state.tokens
    if not tokens.required:
        return Access(Role.FULL)
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    session = request.cookies.get(SESSION_COOKIE, "")
    if scheme.lower() == "bearer" and credentials.strip():
        role = tokens.role_of(credentials.strip())
        if role is None:
            raise HTTPException(
                401, "wrong token", headers={"WWW-Authenticate": 'Bearer error="invalid_token"'}
            )
        access = Access(role)
    elif session and (role := tokens.session_role(session)) is not None:
        access = Access(role, by_cookie=True)
    else:
        raise HTTPException(
            401,
            "this needs a token: send 'Authorization: Bearer <TASK_API_TOKEN>' or log in on the dashboard",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if request.method not in SAFE_METHODS:
        if access.role is Role.READ:
            raise HTTPException(403, "the read-only token cannot change anything")
        presented = request.headers.get(CSRF_HEADER, "")
        if access.by_cookie and not hmac.compare_digest(
            presented.encode(), tokens.csrf_token(access.role, session).encode()
        ):
            raise HTTPException(403, f"missing or wrong {CSRF_HEADER} header (reload the dashboard)")
    return access
