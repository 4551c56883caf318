"""Masking passwords: every URL or text that may hold one goes through here before it is shown.

Kept apart from :mod:`aury_tasks.config.settings` so that the processes that run tasks, which never load
pydantic, can mask what they log too.
"""

from __future__ import annotations

import re
from typing import Protocol

# The password runs to the last "@" of the URL's authority, as urllib and redis-py read it, so
# an unencoded "@" in it is masked too; "[^@\s]+" catches the rest (a "/" in a password).
_PASSWORD_IN_URL = re.compile(r"(?P<head>[a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s]*:)(?P<secret>[^\s/?#]+|[^@\s]+)@")
# redis-py also takes the password as a query parameter (unix:///run/redis.sock?password=...).
_PASSWORD_IN_QUERY = re.compile(r"(?P<head>[?&]password=)(?P<secret>[^&#\s]+)", re.IGNORECASE)


class Secret(Protocol):
    """A value shown only on request, such as pydantic's ``SecretStr``."""

    def get_secret_value(self) -> str: ...


def redact_url(url: str | Secret | None) -> str:
    """Return ``url`` with any password replaced by ``***``.

    >>> redact_url("redis://:hunter2@cache:6379/0")
    'redis://:***@cache:6379/0'
    """
    if url is None:
        return ""
    return redact_text(url if isinstance(url, str) else url.get_secret_value())


def redact_text(text: str) -> str:
    """Mask every ``scheme://user:password@`` and ``?password=`` password found in ``text``."""
    return _PASSWORD_IN_QUERY.sub(r"\g<head>***", _PASSWORD_IN_URL.sub(r"\g<head>***@", text))
