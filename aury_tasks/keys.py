"""Every Redis key prefix aury-tasks uses, and their lifetimes.

The only module that spells key strings: a change of layout happens here and nowhere else.
"""

from __future__ import annotations

#: Namespace of the broker's own keys (Dramatiq's queues, delay queues, heartbeats, acks).
#: Separate from Dramatiq's default ``dramatiq`` so both can share one Redis.
BROKER_NAMESPACE = "aury"

#: How long dead-lettered messages are kept (Dramatiq's ``dead_message_ttl``), in ms.
DEAD_MESSAGE_TTL_MS = 7 * 86_400_000
