"""Email tasks.

Mail goes to the SMTP server at ``EMAILS_SMTP_HOST``:``EMAILS_SMTP_PORT`` when the port is set;
otherwise each message is written as an ``.eml`` file to ``EMAILS_OUTBOX_DIR`` (default
``.aum/outbox``), so the quickstart shows something without a mail server.
"""

from __future__ import annotations

import asyncio
import os
import re
import smtplib
import time
from email.message import EmailMessage
from pathlib import Path

from loguru import logger

from aury_tasks import PermanentError, TaskManager

tm = TaskManager.get_instance()

_ADDRESS = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
SENDER = "noreply@example.com"


def _deliver(message: EmailMessage) -> str:
    port = os.environ.get("EMAILS_SMTP_PORT")
    if port:
        host = os.environ.get("EMAILS_SMTP_HOST", "127.0.0.1")
        with smtplib.SMTP(host, int(port), timeout=10) as smtp:
            smtp.send_message(message)
        return f"smtp://{host}:{port}"
    outbox = Path(os.environ.get("EMAILS_OUTBOX_DIR", ".aum/outbox"))
    outbox.mkdir(parents=True, exist_ok=True)
    path = outbox / f"{time.time_ns()}-{message['To']}.eml"
    path.write_bytes(bytes(message))
    return str(path)


def _compose(to: str, subject: str, body: str) -> EmailMessage:
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = SENDER, to, subject
    message.set_content(body)
    return message


@tm.conditional_task(queue_name="emails", max_retries=3, timeout=60, retry_delay=30, retry_on=(OSError,))
async def send_welcome_email(user_id: str) -> dict:
    """Welcome a new user; retried on network errors (an SMTP server that is down)."""
    to = f"user{user_id}@example.com"
    message = _compose(to, "Welcome aboard", f"Hello user {user_id}, welcome to aury-tasks!")
    where = await asyncio.to_thread(_deliver, message)
    logger.info("welcome email for user {} delivered to {}", user_id, where)
    return {"to": to, "delivered_to": where}


@tm.conditional_task(queue_name="emails", max_retries=3, timeout=60, retry_on=(OSError,))
def send_password_reset(email: str, token: str) -> dict:
    """Send a password reset link; an invalid address fails at once, without retries."""
    if not _ADDRESS.fullmatch(email):
        raise PermanentError(f"invalid email address {email!r}")
    message = _compose(email, "Reset your password", f"Use this link: https://example.com/reset/{token}")
    where = _deliver(message)
    logger.info("password reset for {} delivered to {}", email, where)
    return {"to": email, "delivered_to": where}
