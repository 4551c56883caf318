"""Task and message ids: random version-4 UUIDs as text, made many at a time."""

from __future__ import annotations

import uuid

from aury_tasks.core.ids import new_id, new_ids


def test_new_ids_are_distinct_version_4_uuids_in_their_usual_text() -> None:
    # When 20,000 ids are made at once
    ids = new_ids(20_000)

    # Then each is a version-4 UUID of the RFC 4122 variant, written as str(uuid) writes it
    assert len(set(ids)) == 20_000
    for text in ids:
        parsed = uuid.UUID(text)
        assert (parsed.version, parsed.variant, str(parsed)) == (4, uuid.RFC_4122, text)
    # and the random bits are random: each hex digit of the random places takes all 16 values
    for place in (0, 9, 15, 20, 35):
        assert len({text[place] for text in ids}) == 16


def test_one_id_at_a_time_is_a_version_4_uuid_too() -> None:
    ids = [new_id() for _ in range(5_000)]
    assert len(set(ids)) == 5_000
    for text in ids:
        parsed = uuid.UUID(text)
        assert (parsed.version, parsed.variant, str(parsed)) == (4, uuid.RFC_4122, text)
    assert new_ids(0) == []
