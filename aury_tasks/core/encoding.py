"""Message encoding: strict JSON, and errors that name the argument JSON cannot carry."""

from __future__ import annotations

import contextlib
import dataclasses
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextvars import ContextVar
from json.encoder import c_make_encoder, encode_basestring_ascii  # type: ignore[attr-defined]
from typing import Any

import dramatiq

from .errors import PayloadTooLarge, SerializationError

#: One encoder for every message: compact, and refusing NaN and Infinity (not JSON).
_STRICT = json.JSONEncoder(allow_nan=False, separators=(",", ":"))


def _one_shot_encoder() -> Callable[[Any], str]:
    """``_STRICT.encode`` for a message, made once: the same text, in 60 % of the time.

    ``JSONEncoder.encode`` builds the C encoder again for every call (a third of a message's
    encoding). This one is built once, without a circular-reference check: data that refers to
    itself raises ``RecursionError`` here (the send then names the argument with ``_STRICT``, which
    says "circular reference"). Without the C accelerator, ``_STRICT.encode`` itself.
    """
    if c_make_encoder is None:  # pragma: no cover - CPython always has it
        return _STRICT.encode
    # (markers, default, encoder, indent, key separator, item separator, sort_keys, skipkeys, allow_nan)
    encoder = c_make_encoder(None, _STRICT.default, encode_basestring_ascii, None, ":", ",", False, False,
                             False)  # fmt: skip
    return lambda data: "".join(encoder(data, 0))


_encode_text = _one_shot_encoder()
#: The size limit of the send being encoded in this context (``None``: not a producer's send).
_LIMIT: ContextVar[tuple[int, str] | None] = ContextVar("aury_tasks_payload_limit", default=None)


class StrictJSONEncoder(dramatiq.JSONEncoder):
    """Dramatiq's JSON message encoder, refusing ``NaN`` and ``Infinity``.

    The bytes are the same as Dramatiq's for every valid message; a message that strict JSON
    cannot carry raises ``TypeError`` or ``ValueError`` inside ``broker.enqueue``, before the
    broker writes anything.
    """

    def encode(self, data: Any) -> bytes:
        encoded = _encode_text(data).encode("utf-8")
        limit = _LIMIT.get()
        if limit is not None and len(encoded) > limit[0]:
            raise PayloadTooLarge(
                f"message of {limit[1]} is {len(encoded):,} bytes, over TASK_MAX_MESSAGE_BYTES"
                f" ({limit[0]:,}); pass a reference to the data (a path, a key, an id) instead"
            )
        return encoded


@contextlib.contextmanager
def payload_limit(max_bytes: int, task_name: str) -> Iterator[None]:
    """Hold the messages encoded in this block to ``max_bytes``: a producer's send.

    The check is made where the message is encoded, inside ``broker.enqueue`` and before the
    broker writes anything, so a message is encoded once. A worker's re-enqueue (a retry, whose
    message grows by its traceback) is outside any such block and is never refused.
    """
    token = _LIMIT.set((max_bytes, task_name))
    try:
        yield
    finally:
        _LIMIT.reset(token)


#: The fields of a Dramatiq message, in the order ``Message.asdict`` gives them.
_MESSAGE_FIELDS = tuple(field.name for field in dataclasses.fields(dramatiq.Message))


def encode_message(message: dramatiq.Message[Any]) -> bytes:
    """The bytes of ``message.encode()``, without its look-up of the message's fields each time."""
    return dramatiq.get_encoder().encode({name: getattr(message, name) for name in _MESSAGE_FIELDS})


def install_strict_encoder() -> None:
    """Make Dramatiq encode messages with :class:`StrictJSONEncoder` (once per process)."""
    if not isinstance(dramatiq.get_encoder(), StrictJSONEncoder):
        dramatiq.set_encoder(StrictJSONEncoder())


#: What encoding a value that strict JSON cannot carry raises (RecursionError: nested too deeply).
NOT_JSON = (TypeError, ValueError, RecursionError)


def _why(exc: BaseException) -> str:
    return "nested too deeply" if isinstance(exc, RecursionError) else str(exc)


def unserializable_argument(
    task_name: str, args: Sequence[Any], kwargs: Mapping[str, Any]
) -> SerializationError | None:
    """Return an error naming the first argument strict JSON cannot encode, or ``None``."""
    named: list[tuple[str, Any]] = [(f"argument {i}", value) for i, value in enumerate(args)]
    named += [(f"argument {key!r}", value) for key, value in kwargs.items()]
    for label, value in named:
        try:
            _STRICT.encode(value)
        except NOT_JSON as exc:
            return SerializationError(
                f"{label} of {task_name} is not JSON-serializable ({type(value).__name__}): {_why(exc)}"
            )
    return None


def check_json_metadata(task_name: str, metadata: Mapping[str, Any], max_bytes: int) -> None:
    """Check ``metadata`` as a send checks its message: strict JSON, at most ``max_bytes`` encoded.

    Metadata goes to the task's record, written by the ledger inside ``broker.enqueue``, where
    Dramatiq logs a middleware's error and sends the message all the same: checked before.

    Raises:
      SerializationError: naming the first entry strict JSON cannot encode.
      PayloadTooLarge: when the encoded metadata is over ``max_bytes`` (TASK_MAX_MESSAGE_BYTES).
    """
    for key, value in metadata.items():
        try:
            _STRICT.encode({key: value})
        except NOT_JSON as exc:
            kind = type(value).__name__
            raise SerializationError(
                f"metadata {key!r} of {task_name} is not JSON-serializable ({kind}): {_why(exc)}"
            ) from None
    size = len(_STRICT.encode(dict(metadata)).encode("utf-8"))
    if size > max_bytes:
        raise PayloadTooLarge(
            f"metadata of {task_name} is {size:,} bytes, over TASK_MAX_MESSAGE_BYTES ({max_bytes:,});"
            " keep references (ids, keys) in metadata, not data"
        )


def check_json_arguments(task_name: str, args: Sequence[Any], kwargs: Mapping[str, Any]) -> None:
    """Raise :class:`SerializationError` naming the first argument strict JSON cannot encode."""
    try:
        _STRICT.encode([args, kwargs])
    except NOT_JSON:
        raise unserializable_argument(task_name, args, kwargs) or SerializationError(
            f"the arguments of {task_name} are not JSON-serializable"
        ) from None
