"""Unique ids for tasks and messages: random UUIDs (version 4) as text, as Dramatiq makes them.

``str(uuid.uuid4())`` reads the OS's random source and builds a ``UUID`` object for every id (about
4 µs); :func:`new_ids` reads it once for all the ids it makes and formats them directly (about
1 µs each) when it makes many, which a bulk send of thousands of messages, needing two ids a message, notices.
"""

from __future__ import annotations

import os
import uuid

#: Byte translations setting a UUID's version (4) and variant (RFC 4122) bits.
_VERSION_4 = bytes((byte & 0x0F) | 0x40 for byte in range(256))
_VARIANT = bytes((byte & 0x3F) | 0x80 for byte in range(256))


def new_ids(count: int) -> list[str]:
    """``count`` random version-4 UUIDs, each as ``xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx`` text.

    >>> import uuid
    >>> uuid.UUID(new_ids(1)[0]).version
    4
    """
    raw = bytearray(os.urandom(16 * count))
    raw[6::16] = raw[6::16].translate(_VERSION_4)
    raw[8::16] = raw[8::16].translate(_VARIANT)
    text = raw.hex()
    return [
        f"{text[at : at + 8]}-{text[at + 8 : at + 12]}-{text[at + 12 : at + 16]}-"
        f"{text[at + 16 : at + 20]}-{text[at + 20 : at + 32]}"
        for at in range(0, 32 * count, 32)
    ]


def new_id() -> str:
    """One random version-4 UUID as text (for one id, ``uuid.uuid4`` is as quick)."""
    return str(uuid.uuid4())
