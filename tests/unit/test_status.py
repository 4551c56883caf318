"""Task statuses move forward only."""

from __future__ import annotations

from aury_tasks.core.status import FINAL_STATUSES, TaskStatus


def test_a_late_pending_never_replaces_an_ended_task() -> None:
    for final in FINAL_STATUSES:
        assert not TaskStatus.PENDING.may_follow(final, attempt=1, current_attempt=1)


def test_an_attempt_moves_from_waiting_to_running_to_retrying() -> None:
    assert TaskStatus.STARTED.may_follow(TaskStatus.PENDING, attempt=1, current_attempt=1)
    assert TaskStatus.RETRYING.may_follow(TaskStatus.STARTED, attempt=1, current_attempt=1)
    # ... and not back
    assert not TaskStatus.STARTED.may_follow(TaskStatus.RETRYING, attempt=1, current_attempt=1)
    assert not TaskStatus.PENDING.may_follow(TaskStatus.STARTED, attempt=1, current_attempt=1)


def test_the_next_attempt_may_start_after_a_retry() -> None:
    assert TaskStatus.STARTED.may_follow(TaskStatus.RETRYING, attempt=2, current_attempt=1)


def test_a_redelivered_start_of_the_same_attempt_changes_nothing() -> None:
    assert not TaskStatus.STARTED.may_follow(TaskStatus.STARTED, attempt=1, current_attempt=1)


def test_ending_wins_over_any_open_state_and_is_final() -> None:
    for final in FINAL_STATUSES:
        for open_status in set(TaskStatus) - FINAL_STATUSES:
            assert final.may_follow(open_status, attempt=1, current_attempt=3)
        for other in FINAL_STATUSES:
            assert not other.may_follow(final, attempt=9, current_attempt=1)


def test_a_delayed_task_becomes_pending_when_due_but_not_back() -> None:
    assert TaskStatus.PENDING.may_follow(TaskStatus.SCHEDULED, attempt=1, current_attempt=1)
    assert not TaskStatus.SCHEDULED.may_follow(TaskStatus.PENDING, attempt=1, current_attempt=1)
