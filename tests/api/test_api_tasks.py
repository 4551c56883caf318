"""Tasks over HTTP against a real worker: send, read, follow, cancel, retry, list, statistics."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

from conftest import WorkerProcess
from fastapi.testclient import TestClient
from integration.events import STATS_FLUSH_TIMEOUT, wait_until

from .conftest import Send, error_of, wait_until_ended


def test_a_task_sent_over_http_runs_and_its_result_is_read(
    api: TestClient, send: Send, start_worker: Callable[..., WorkerProcess]
) -> None:
    # Given a worker
    start_worker("-q", "fixture")

    # When a task is sent with options, and its result read once it ended
    sent = send("add", args=[2, 3], metadata={"order": "A-1"}, max_retries=1, timeout=30, priority=0)
    ended = wait_until_ended(api, sent["id"])
    record = api.get(f"/api/v1/tasks/{sent['id']}").json()
    progress = api.get(f"/api/v1/tasks/{sent['id']}/progress").json()

    # Then the first answer was its record as written, the last ones its result and record
    assert sent["status"] in {"pending", "started", "success"} and sent["task_name"].endswith(".add")
    assert sent["queue_name"] == "fixture" and sent["args"] == [2, 3]
    assert ended == {"id": sent["id"], "status": "success", "ready": True, "result": 5, "error": None,
                     "redacted": False}  # fmt: skip
    assert record["status"] == "success" and record["metadata"] == {"order": "A-1"}
    assert record["duration"] is not None and record["worker"]
    assert progress == {"id": sent["id"], "status": "success", "progress": None}


def test_a_failed_task_shows_its_error_and_is_retried(
    api: TestClient, send: Send, start_worker: Callable[..., WorkerProcess]
) -> None:
    # Given a worker and a task that fails for good (no retries left)
    start_worker("-q", "fixture")
    sent = send("permanent", args=["p1"])
    ended = wait_until_ended(api, sent["id"])

    # When it is retried over HTTP, and a task still pending is retried
    retried = api.post(f"/api/v1/tasks/{sent['id']}/retry")
    slow = send("runs", args=["slow", 5.0], delay=60)
    refused = api.post(f"/api/v1/tasks/{slow['id']}/retry")

    # Then the error is shown with its traceback, the retry is a new linked task, the other refused
    assert ended["status"] == "failure" and ended["result"] is None
    assert ended["error"]["type"] and "p1" in ended["error"]["message"] and ended["error"]["traceback"]
    assert retried.status_code == 201
    assert retried.json()["retry_of"] == sent["id"] and retried.json()["id"] != sent["id"]
    assert api.get(f"/api/v1/tasks/{sent['id']}").json()["retried_by"] == retried.json()["id"]
    assert error_of(refused)[:2] == (409, "conflict") and "scheduled" in error_of(refused)[2]


def test_cancel_stops_a_running_task(
    api: TestClient, send: Send, start_worker: Callable[..., WorkerProcess]
) -> None:
    # Given a long task running on a worker
    start_worker("-q", "fixture")
    sent = send("spins", args=["c1", 30.0])
    deadline = time.monotonic() + 15
    while api.get(f"/api/v1/tasks/{sent['id']}").json()["status"] != "started":
        assert time.monotonic() < deadline, "the task never started"
        time.sleep(0.05)

    # When it is cancelled over HTTP, twice
    first = api.delete(f"/api/v1/tasks/{sent['id']}")
    second = api.delete(f"/api/v1/tasks/{sent['id']}")

    # Then the first cancels it, the second finds it ended already
    assert first.json() == {"id": sent["id"], "cancelled": True, "status": "cancelled"}
    assert second.json() == {"id": sent["id"], "cancelled": False, "status": "cancelled"}
    assert wait_until_ended(api, sent["id"])["error"]["type"] == "Cancelled"


def test_the_event_stream_follows_status_and_progress_to_the_end(
    api: TestClient, send: Send, start_worker: Callable[..., WorkerProcess]
) -> None:
    # Given a task that reports its progress four times, sent before any worker runs
    sent = send("with_progress", args=[4, 0.15])

    # When its event stream is read while a worker runs it
    events: list[tuple[str, dict[str, object]]] = []
    with api.stream("GET", f"/api/v1/tasks/{sent['id']}/events") as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        start_worker("-q", "fixture")
        kind = ""
        for line in stream.iter_lines():
            if line.startswith("event: "):
                kind = line[len("event: ") :]
            elif line.startswith("data: "):
                events.append((kind, json.loads(line[len("data: ") :])))

    # Then it saw the statuses in order, each progress report, and the end
    statuses = [data["status"] for kind, data in events if kind == "status"]
    percents = [data["percent"] for kind, data in events if kind == "progress"]
    assert statuses[0] == "pending" and statuses[-1] == "success" and "started" in statuses
    assert percents == [25.0, 50.0, 75.0, 100.0]
    assert events[-1] == ("end", {})
    assert [data for kind, data in events if kind == "status"][-1]["result"] == "done"


def test_lists_filter_and_page_and_statistics_count(
    api: TestClient, send: Send, start_worker: Callable[..., WorkerProcess]
) -> None:
    # Given five tasks that succeeded and one that failed
    start_worker("-q", "fixture")
    done = [send("add", args=[i, i]) for i in range(5)]
    failed = send("permanent", args=["f"])
    for task in [*done, failed]:
        wait_until_ended(api, task["id"])
    wait_until(lambda: api.get("/api/v1/tasks/statistics").json()["total"] == 6, timeout=STATS_FLUSH_TIMEOUT,
               what="the worker's statistics")  # fmt: skip

    # When they are listed by status and page, and counted
    page1 = api.get("/api/v1/tasks", params={"status": "success", "page_size": 2}).json()
    page3 = api.get("/api/v1/tasks", params={"status": "success", "page_size": 2, "page": 3}).json()
    failures = api.get("/api/v1/tasks", params={"status": "failure", "queue": "fixture"}).json()
    none_yet = api.get("/api/v1/tasks", params={"until": "2001-01-01T00:00:00Z"}).json()
    stats = api.get("/api/v1/tasks/statistics", params={"start_time": time.time() - 600}).json()
    series = api.get("/api/v1/tasks/throughput", params={"span": 600, "points": 10}).json()

    # Then pages are newest first, filters hold, and counts match
    assert page1["total"] == 5 and page1["pages"] == 3 and len(page1["items"]) == 2
    assert [item["id"] for item in page1["items"]] == [done[4]["id"], done[3]["id"]]
    assert [item["id"] for item in page3["items"]] == [done[0]["id"]]
    assert [item["id"] for item in failures["items"]] == [failed["id"]]
    assert none_yet["total"] == 0
    assert (stats["total"], stats["succeeded"], stats["failed"]) == (6, 5, 1)
    assert len(series["points"]) == 10 and sum(point["total"] for point in series["points"]) == 6
    assert sum(point["failed"] for point in series["points"]) == 1


def test_wrong_input_gets_one_readable_error(api: TestClient) -> None:
    # When tasks are sent wrongly, and unknown ids asked for
    unknown_task = api.post("/api/v1/tasks", json={"task": "no_such_task"})
    not_json = api.post("/api/v1/tasks", content=b"{not json", headers={"Content-Type": "application/json"})
    wrong_field = api.post("/api/v1/tasks", json={"task": "add", "args": [1, 2], "prority": 3})
    both = api.post("/api/v1/tasks", json={"task": "add", "delay": 5, "eta": "2030-01-01T00:00:00Z"})
    wrong_arguments = api.post("/api/v1/tasks", json={"task": "add", "args": [1], "kwargs": {"z": 2}})
    unknown_id = api.get("/api/v1/tasks/0000-nope")
    unknown_status = api.get("/api/v1/tasks", params={"status": "exploded"})
    backwards = api.get("/api/v1/tasks/statistics", params={"start_time": 2000, "end_time": 1000})

    # Then each is one line with a meaningful status
    assert error_of(unknown_task)[:2] == (422, "invalid") and "no_such_task" in error_of(unknown_task)[2]
    assert error_of(not_json)[:2] == (400, "bad_request")
    assert error_of(wrong_field)[:2] == (422, "invalid") and "prority" in error_of(wrong_field)[2]
    assert "delay or eta" in error_of(both)[2]
    assert error_of(wrong_arguments)[:2] == (422, "invalid") and "'y'" in error_of(wrong_arguments)[2]
    assert error_of(unknown_id)[:2] == (404, "not_found") and "0000-nope" in error_of(unknown_id)[2]
    assert error_of(unknown_status)[:2] == (422, "invalid") and "status" in error_of(unknown_status)[2]
    assert error_of(backwards)[:2] == (422, "invalid")
    for answer in (unknown_task, not_json, wrong_field, both, wrong_arguments, unknown_id, unknown_status):
        assert "\n" not in error_of(answer)[2] and "Traceback" not in error_of(answer)[2]


def test_the_registered_tasks_are_listed_with_their_options(api: TestClient, reader: TestClient) -> None:
    # When the registered tasks are read, with either token
    listed = api.get("/api/v1/task-names").json()["items"]
    by_reader = reader.get("/api/v1/task-names")

    # Then each fixture task is there once, with its queue, options and parameters
    by_name = {item["short_name"]: item for item in listed}
    assert [item["name"] for item in listed] == sorted(item["name"] for item in listed)
    assert by_name["add"]["name"] == "sample_modules.jobs.tasks.add"
    assert by_name["add"]["queue"] == "fixture" and by_name["add"]["parameters"] == ["x", "y"]
    assert by_name["add"]["kind"] == "sync" and by_name["add"]["timeout"] > 0
    assert by_reader.status_code == 200 and by_reader.json()["items"] == listed
