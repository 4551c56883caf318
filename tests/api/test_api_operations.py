"""Queues, dead letters, workflows and schedules over HTTP, against real workers and schedulers."""

from __future__ import annotations

import time
from collections.abc import Callable

from conftest import WorkerProcess
from fastapi.testclient import TestClient

from .conftest import Send, error_of, wait_until_ended


def test_queues_and_workers_show_what_is_waiting_and_who_serves(
    api: TestClient, send: Send, start_worker: Callable[..., WorkerProcess]
) -> None:
    # Given three tasks waiting on a queue no worker serves, and a worker on another
    for tag in ("a", "b", "c"):
        send("on_other_queue", args=[tag])
    start_worker("-q", "fixture")

    # When the queues and workers are read
    queues = {queue["queue_name"]: queue for queue in api.get("/api/v1/queues").json()["items"]}
    other = api.get("/api/v1/queues/other/stats").json()
    workers = api.get("/api/v1/workers").json()["items"]
    bad_name = api.get("/api/v1/queues/no spaces!/stats")

    # Then each queue has its counts and its workers
    assert other == queues["other"] and other["pending"] == 3 and other["workers"] == 0
    assert queues["fixture"]["workers"] == len(workers) >= 1
    assert workers[0]["queues"] == ["fixture"] and workers[0]["pid"] > 0
    assert bad_name.status_code == 422


def test_dead_letters_are_listed_requeued_and_purged(
    api: TestClient, send: Send, start_worker: Callable[..., WorkerProcess]
) -> None:
    # Given two tasks of a queue that died (no retries left), the first sent first, and no worker
    worker = start_worker("-q", "fixture")
    first, second = send("permanent", args=["d1"]), send("permanent", args=["d2"])
    for task in (first, second):
        wait_until_ended(api, task["id"])
    deadline = time.monotonic() + 10
    while api.get("/api/v1/queues/fixture/dead-letters").json()["total"] < 2:
        assert time.monotonic() < deadline, "the tasks were never dead-lettered"
        time.sleep(0.05)
    worker.stop()

    # When they are listed, the first requeued, then the rest purged
    listed = api.get("/api/v1/queues/fixture/dead-letters").json()
    requeued = api.post(
        "/api/v1/queues/fixture/dead-letters/requeue", json={"task_ids": [first["id"]]}
    ).json()
    purged = api.delete("/api/v1/queues/fixture/dead-letters").json()
    after = api.get("/api/v1/queues/fixture/dead-letters").json()

    # Then the listing had both, newest first; the requeue made a new linked task
    assert [letter["task_id"] for letter in listed["items"]] == [second["id"], first["id"]]
    assert listed["items"][0]["args"] == ["d2"] and listed["items"][0]["error_type"]
    new = api.get(f"/api/v1/tasks/{requeued['requeued'][first['id']]}").json()
    assert new["retry_of"] == first["id"] and new["status"] == "pending" and new["args"] == ["d1"]
    assert purged == {"purged": 1} and after["total"] == 0 and after["items"] == []


def test_a_workflow_sent_over_http_runs_and_shows_its_tree(
    api: TestClient, start_worker: Callable[..., WorkerProcess]
) -> None:
    # Given a worker
    start_worker("-q", "fixture")

    # When a chain whose second step is a chord is sent: add(1, 2) -> [add(r, 10), add(r, 20)] -> echo
    header = [{"task": "add", "args": [10]}, {"task": "add", "args": [20]}]
    chord = {"chord": header, "callback": {"task": "echo"}}
    step = {"chain": [{"task": "add", "args": [1, 2]}, chord]}
    sent = api.post("/api/v1/workflows", json={"workflow": step})
    assert sent.status_code == 201, sent.text
    workflow_id = sent.json()["id"]
    deadline = time.monotonic() + 20
    while (tree := api.get(f"/api/v1/workflows/{workflow_id}").json())["status"] not in (
        "success",
        "failure",
    ):
        assert time.monotonic() < deadline, tree
        time.sleep(0.1)

    # Then every step ran, and the tree shows each with its status
    assert sent.json()["kind"] == "chain" and tree["kind"] == "chain" and tree["status"] == "success"
    root = tree["root"]
    assert [child["kind"] for child in root["children"]] == ["task", "chord"]
    node = root["children"][1]
    assert [child["kind"] for child in node["children"]] == ["group", "task"]
    assert all(child["status"] == "success" for child in node["children"][0]["children"])
    assert api.get(f"/api/v1/tasks/{node['children'][1]['id']}/result").json()["result"] == [13, 23]


def test_a_wrong_workflow_is_refused_in_one_line(api: TestClient) -> None:
    # When workflows are sent that name an unknown task, mix kinds, or lack a chord's callback
    unknown = api.post("/api/v1/workflows", json={"workflow": {"chain": [{"task": "nope"}]}})
    mixed = api.post("/api/v1/workflows", json={"workflow": {"task": "add", "group": [{"task": "add"}]}})
    no_callback = api.post("/api/v1/workflows", json={"workflow": {"chord": [{"task": "add"}]}})
    unknown_id = api.get("/api/v1/workflows/not-a-workflow")

    # Then each is refused with a readable reason
    assert error_of(unknown)[:2] == (422, "invalid") and "nope" in error_of(unknown)[2]
    assert "one of task, chain, group or chord" in error_of(mixed)[2]
    assert "callback" in error_of(no_callback)[2]
    assert error_of(unknown_id)[:2] == (404, "not_found")


def test_scheduled_jobs_are_added_changed_paused_run_and_removed(
    api: TestClient, start_worker: Callable[..., WorkerProcess], start_scheduler: Callable[..., WorkerProcess]
) -> None:
    # Given a worker and a scheduler
    start_worker("-q", "fixture")
    scheduler = start_scheduler()

    # When a cron job is added, a second time, then changed, paused, run now, resumed, removed
    body = {
        "name": "nightly-sum",
        "task": "add",
        "cron": "0 2 * * *",
        "args": [4, 5],
        "timezone": "Europe/Paris",
    }
    added = api.post("/api/v1/scheduled-tasks", json=body)
    again = api.post("/api/v1/scheduled-tasks", json=body)
    changed = api.put("/api/v1/scheduled-tasks/nightly-sum", json={"cron": "30 3 * * 1-5", "jitter": 5})
    paused = api.post("/api/v1/scheduled-tasks/nightly-sum/pause").json()
    ran = api.post("/api/v1/scheduled-tasks/nightly-sum/run")
    result = wait_until_ended(api, ran.json()["id"])
    listed = api.get("/api/v1/scheduled-tasks").json()["items"]
    resumed = api.post("/api/v1/scheduled-tasks/nightly-sum/resume").json()
    status = api.get("/api/v1/scheduler/status").json()
    removed = api.delete("/api/v1/scheduled-tasks/nightly-sum")
    gone = api.get("/api/v1/scheduled-tasks/nightly-sum")

    # Then each step answered the job as it then stood
    assert added.status_code == 201, added.text
    assert (
        added.json()["trigger_text"] == "cron 0 2 * * * (Europe/Paris)"
        and added.json()["next_run"] > time.time()
    )
    assert error_of(again)[:2] == (409, "conflict")
    assert changed.json()["trigger"]["crontab"] == "30 3 * * 1-5" and changed.json()["options"]["jitter"] == 5
    assert changed.json()["args"] == [4, 5]
    assert paused["paused"] is True and paused["next_run"] is None
    assert ran.status_code == 201 and result["result"] == 9
    assert listed[0]["last_run"]["task_id"] == ran.json()["id"] and listed[0]["last_status"] == "success"
    assert resumed["paused"] is False and resumed["next_run"] is not None
    assert status["jobs"] == 1 and status["next_fires"][0]["name"] == "nightly-sum"
    assert status["leader"] and status["leader"] in scheduler.output()
    assert removed.status_code == 204 and error_of(gone)[:2] == (404, "not_found")


def test_cron_expressions_are_checked_with_their_next_fire_times(api: TestClient) -> None:
    # When a valid and an invalid expression are checked, and a job added with the invalid one
    valid = api.post("/api/v1/scheduler/validate-cron", json={"expression": "*/15 9-17 * * 1-5", "count": 3})
    invalid = api.post("/api/v1/scheduler/validate-cron", json={"expression": "61 * * * *"})
    refused = api.post("/api/v1/scheduled-tasks", json={"name": "x", "task": "add", "cron": "61 * * * *",
                                                        "args": [1, 2]})  # fmt: skip
    wrong_arguments = api.post(
        "/api/v1/scheduled-tasks", json={"name": "y", "task": "add", "cron": "* * * * *"}
    )

    # Then the valid one has three increasing fire times, the invalid one a reason naming the field
    times = valid.json()["next_fire_times"]
    assert valid.json()["valid"] is True and len(times) == 3 and times == sorted(times)
    assert invalid.json()["valid"] is False and "minute" in invalid.json()["reason"]
    assert error_of(refused)[:2] == (422, "invalid") and "minute" in error_of(refused)[2]
    assert error_of(wrong_arguments)[:2] == (422, "invalid") and "'x'" in error_of(wrong_arguments)[2]


def test_refresh_reaches_the_running_scheduler(
    api: TestClient, start_scheduler: Callable[..., WorkerProcess]
) -> None:
    # Given no scheduler, then one
    alone = api.post("/api/v1/scheduler/refresh").json()
    start_scheduler()

    # When a refresh is asked for
    heard = api.post("/api/v1/scheduler/refresh").json()

    # Then the running scheduler heard it
    assert alone == {"refreshed": True, "schedulers": 0}
    assert heard == {"refreshed": True, "schedulers": 1}
