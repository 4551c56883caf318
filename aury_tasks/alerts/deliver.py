"""Deliveries: a log line for every firing and resolution, and a signed JSON POST to a webhook.

The POST runs in a background thread with retries and exponential backoff, so an evaluation
never waits for a slow or dead receiver. With a secret, the body's HMAC-SHA256 is sent as
``X-Aury-Signature: sha256=<hex>``; the receiver recomputes it over the raw body.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import queue
import threading
import urllib.error
import urllib.request
from dataclasses import KW_ONLY, dataclass, field
from typing import Any

from loguru import logger

from ..core.errors import AlertDeliveryFailed
from ..core.redaction import redact_url
from .evaluate import Transition

#: Header carrying the body's signature.
SIGNATURE_HEADER = "X-Aury-Signature"
#: Tries of one delivery, and the first wait between two (doubling).
ATTEMPTS = 5
FIRST_BACKOFF = 0.5


def sign(body: bytes, secret: str) -> str:
    """The signature header value of ``body``: ``sha256=<hex HMAC-SHA256 with secret>``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(body: bytes, secret: str, signature: str) -> bool:
    """Whether ``signature`` is :func:`sign`'s for ``body`` (in constant time)."""
    return hmac.compare_digest(sign(body, secret), signature)


def encode(payload: dict[str, Any]) -> bytes:
    """The JSON body of ``payload`` (keys sorted, so a body is stable)."""
    return json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()


def log_transition(transition: Transition) -> None:
    """The log line of a firing (warning) or a resolution (info)."""
    rule = transition.rule
    if transition.state == "firing":
        logger.warning("alert {} firing: {} of {} is {:g} (threshold {:g})", rule.name, rule.kind,
                       rule.target, transition.value, rule.threshold)  # fmt: skip
    else:
        logger.info(
            "alert {} resolved: {} of {} is {:g}", rule.name, rule.kind, rule.target, transition.value
        )


@dataclass(eq=False, repr=False)  # (no repr: the URL and the secret are never shown unmasked)
class WebhookNotifier:
    """Logs every transition and POSTs it to ``url`` (if set) from a background thread.

    Parameters:
      url: the webhook URL (``None``: the log only). Never logged unmasked.
      secret: the HMAC key (``None``: unsigned).
      timeout: seconds one POST may take.
      attempts: POSTs of one transition before it is given up.
      first_backoff: seconds before the second attempt (doubling after it).
    """

    url: str | None
    secret: str | None = None
    _: KW_ONLY
    timeout: float = 5.0
    attempts: int = ATTEMPTS
    first_backoff: float = FIRST_BACKOFF
    _queue: queue.Queue[bytes | None] = field(default_factory=queue.Queue, init=False)
    _stopping: threading.Event = field(default_factory=threading.Event, init=False)
    _thread: threading.Thread | None = field(default=None, init=False)

    @property
    def shown_url(self) -> str:
        """The URL with its password masked."""
        return redact_url(self.url) if self.url else "(none)"

    def notify(self, transition: Transition) -> None:
        """Log ``transition`` and queue its POST."""
        log_transition(transition)
        if self.url is None:
            return
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="aury-alerts-webhook", daemon=True)
            self._thread.start()
        self._queue.put(encode(transition.payload()))

    def post(self, body: bytes) -> int:
        """POST ``body`` once; return the HTTP status (2xx).

        Raises:
          AlertDeliveryFailed: no URL, unreachable, or an answer other than 2xx.
        """
        if self.url is None:
            raise AlertDeliveryFailed("no alert webhook: set TASK_ALERT_WEBHOOK_URL")
        headers = {"Content-Type": "application/json", "User-Agent": "aury-tasks-alerts"}
        if self.secret:
            headers[SIGNATURE_HEADER] = sign(body, self.secret)
        request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")  # noqa: S310
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
                status = int(response.status)
        except urllib.error.HTTPError as exc:
            raise AlertDeliveryFailed(f"alert webhook {self.shown_url} answered {exc.code}") from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            raise AlertDeliveryFailed(f"alert webhook {self.shown_url} unreachable: {reason}") from None
        if not 200 <= status < 300:
            raise AlertDeliveryFailed(f"alert webhook {self.shown_url} answered {status}")
        return status

    def close(self, timeout: float = 2.0) -> None:
        """Stop the delivery thread (what is still queued or retrying is dropped after ``timeout``)."""
        self._stopping.set()
        self._queue.put(None)
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stopping.is_set():
            body = self._queue.get()
            if body is None:
                return
            self._deliver(body)

    def _deliver(self, body: bytes) -> None:
        wait = self.first_backoff
        for attempt in range(1, self.attempts + 1):
            try:
                self.post(body)
                return
            except AlertDeliveryFailed as exc:
                if attempt == self.attempts or self._stopping.is_set():
                    logger.error("alert delivery given up after {} tries: {}", attempt, exc.message)
                    return
                logger.warning("alert delivery failed (try {} of {}), again in {:g} s: {}", attempt,
                               self.attempts, wait, exc.message)  # fmt: skip
            if self._stopping.wait(wait):
                return
            wait *= 2
