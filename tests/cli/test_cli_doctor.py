"""``aum doctor`` on a good and on a broken setup: its lines, its summary and its exit code."""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator

import pytest
import redis

from aury_tasks.broker.redis.checks import OPTIONAL_COMMANDS, REQUIRED_COMMAND_NAMES, acl_check, acl_rules
from aury_tasks.core.keys import DEFAULT, KeySpace

from .conftest import ROOT, Invoke, RunAum

FIXTURE_MODULES = ROOT / "tests" / "fixtures" / "sample_modules"
BROKEN_MODULES = ROOT / "tests" / "fixtures" / "broken_modules"
DEPLOY_DOC = ROOT / "docs" / "deploy.md"
#: ``STATUS  CHECK  DETAIL``: the status column is 4 wide, the check column as wide as the longest.
LINE = re.compile(r"(ok  |warn|FAIL)  (\S+(?: \S+)?) +(\S.*)")


def findings(stdout: str) -> list[tuple[str, str, str]]:
    """The ``(status, check, detail)`` of each line but the summary, checking they are aligned."""
    *lines, summary = stdout.splitlines()
    assert re.fullmatch(r"\d+ ok, \d+ warn, \d+ FAIL.*", summary)
    parsed = []
    for line in lines:
        match = LINE.fullmatch(line)
        assert match, line
        parsed.append((match[1].strip(), match[2], match[3]))
    assert len({line.index(detail) for line, (_, _, detail) in zip(lines, parsed, strict=True)}) == 1
    return parsed


def closed_port() -> int:
    """A loopback port nobody listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def appendonly_no(redis_client: redis.Redis) -> Iterator[None]:
    """The test Redis with ``appendonly no`` for the test, then as it was."""
    before = redis_client.config_get("appendonly")["appendonly"]
    redis_client.config_set("appendonly", "no")
    yield
    redis_client.config_set("appendonly", before)


def test_a_good_setup_lists_the_checks_and_the_tasks_and_exits_0(invoke: Invoke, redis_url: str) -> None:
    # Given the test Redis and the fixture modules
    env = {"TASK_BROKER_URL": redis_url}

    # When the doctor runs
    result = invoke("doctor", "--modules", str(FIXTURE_MODULES), env=env)

    # Then every check has an aligned line, none failed, and each task is listed
    assert result.exit_code == 0
    lines = findings(result.stdout)
    checks = {check for _, check, _ in lines}
    assert {
        "settings",
        "broker",
        "broker redis",
        "broker acl",
        "ledger",
        "tasks",
        "schedules",
        "workers",
    } <= checks
    assert all(status in ("ok", "warn") for status, _, _ in lines)
    tasks = [detail for _, check, detail in lines if check == "task"]
    assert any(
        detail.startswith("sample_modules.jobs.tasks.add ") and "queue fixture" in detail for detail in tasks
    )
    assert any(detail.startswith("sample_modules.jobs.tasks.on_other_queue ") for detail in tasks)
    assert ("ok", "broker acl") in {(status, check) for status, check, _ in lines}
    assert result.stdout.splitlines()[-1].endswith(" 0 FAIL")


def test_an_unreachable_broker_exits_4_in_one_line_without_the_password(run_aum: RunAum) -> None:
    # Given a password-protected broker URL on a port nobody listens on
    port = closed_port()
    env = {"TASK_BROKER_URL": f"redis://:s3cret@127.0.0.1:{port}/0"}

    # When the real aum doctor runs
    completed = run_aum("doctor", "--modules", str(FIXTURE_MODULES), env=env)

    # Then it exits 4 with one FAIL line naming the masked URL, and the password is nowhere
    assert completed.returncode == 4
    failed = [(check, detail) for status, check, detail in findings(completed.stdout) if status == "FAIL"]
    assert failed == [
        ("broker", f"broker redis://:***@127.0.0.1:{port}/0 unreachable "
                   f"(Error 111 connecting to 127.0.0.1:{port}. Connection refused.)")
    ]  # fmt: skip
    assert completed.stdout.splitlines()[-1] == "1 ok, 0 warn, 1 FAIL; stopped at broker (exit 4)"
    assert "s3cret" not in completed.stdout + completed.stderr


def test_an_invalid_setting_exits_2_naming_the_variable(invoke: Invoke) -> None:
    # Given a wrong setting
    # When the doctor runs
    result = invoke("doctor", "--modules", str(FIXTURE_MODULES), env={"TASK_TIMEOUT": "abc"})

    # Then it exits 2 with one FAIL line naming the variable
    assert result.exit_code == 2
    [(status, check, detail)] = findings(result.stdout)
    assert (status, check) == ("FAIL", "settings")
    assert detail.startswith("invalid setting TASK_TIMEOUT: ")


def test_a_module_that_fails_to_import_exits_3_naming_it(invoke: Invoke, redis_url: str) -> None:
    # Given a modules directory with a module whose import fails
    env = {"TASK_BROKER_URL": redis_url}

    # When the doctor runs
    result = invoke("doctor", "--modules", str(BROKEN_MODULES), env=env)

    # Then the Redis checks ran, and it stops at the modules with exit 3, naming the module
    assert result.exit_code == 3
    lines = findings(result.stdout)
    assert lines[-1][:2] == ("FAIL", "modules")
    assert "broken_modules.broken.tasks failed to import: ModuleNotFoundError" in lines[-1][2]
    assert ("ok", "broker") in {(status, check) for status, check, _ in lines}


def test_a_redis_without_appendonly_gives_a_warn_line_and_exits_0(
    invoke: Invoke, redis_url: str, appendonly_no: None
) -> None:
    # Given the test Redis with appendonly no
    env = {"TASK_BROKER_URL": redis_url}

    # When the doctor runs
    result = invoke("doctor", "--modules", str(FIXTURE_MODULES), env=env)

    # Then a warn line says so and what to set, and warnings leave the exit code at 0
    assert result.exit_code == 0
    warned = [detail for status, check, detail in findings(result.stdout) if status == "warn"]
    assert any("appendonly no" in detail and "set appendonly yes" in detail for detail in warned)


def test_an_acl_user_without_a_needed_command_fails_with_exit_1(
    invoke: Invoke, redis_url: str, redis_client: redis.Redis
) -> None:
    # Given an ACL user that may run everything but KEYS (Dramatiq's maintenance needs it)
    redis_client.acl_setuser("doctor-test", enabled=True, passwords=["+pw"], keys=["*"], channels=["*"],
                             commands=["+@all", "-keys"])  # fmt: skip
    url = redis_url.replace("redis://", "redis://doctor-test:pw@", 1)
    try:
        # When the doctor runs as that user
        result = invoke("doctor", "--modules", str(FIXTURE_MODULES), env={"TASK_BROKER_URL": url})
    finally:
        redis_client.acl_deluser("doctor-test")

    # Then the ACL line fails naming the command, the other checks still run, and it exits 1
    assert result.exit_code == 1
    lines = findings(result.stdout)
    assert ("FAIL", "broker acl") in {(status, check) for status, check, _ in lines}
    assert any(check == "broker acl" and "may not run KEYS" in detail for _, check, detail in lines)
    assert "workers" in {check for _, check, _ in lines}
    assert "pw@" not in result.stdout


def test_the_acl_user_of_docs_deploy_may_run_every_command(redis_client: redis.Redis) -> None:
    # Given the ACL user line of docs/deploy.md's redis.conf
    [line] = [line for line in DEPLOY_DOC.read_text().splitlines() if line.startswith("user aury ")]
    rules = line.split()[2:]
    redis_client.execute_command("ACL", "SETUSER", "doctor-doc", *rules)
    try:
        # When the server is asked what that user may run
        check = acl_check(redis_client, DEFAULT, "doctor-doc")
    finally:
        redis_client.acl_deluser("doctor-doc")

    # Then it may run every command aury-tasks needs, the optional ones too, and no other
    assert check.skipped is None
    assert check.refused == {}
    assert check.refused_optional == {}
    granted = {rule[1:].upper() for rule in rules if rule.startswith("+")}
    assert granted == {*REQUIRED_COMMAND_NAMES, *OPTIONAL_COMMANDS}
    # ... and the line is the one acl_rules() gives for the default prefix
    assert line == f"user aury on >CHANGE-ME {acl_rules(DEFAULT)}"


def test_an_acl_user_limited_to_one_prefix_may_run_everything_there_and_nothing_under_another(
    redis_client: redis.Redis,
) -> None:
    # Given a user with the rules of the prefix "shop" only
    shop = KeySpace("shop")
    redis_client.execute_command("ACL", "SETUSER", "doctor-shop", "on", "nopass", *acl_rules(shop).split())
    try:
        # When the server is asked what that user may run under "shop" and under the default prefix
        under_shop = acl_check(redis_client, shop, "doctor-shop")
        under_aury = acl_check(redis_client, DEFAULT, "doctor-shop")
    finally:
        redis_client.acl_deluser("doctor-shop")

    # Then everything under its own prefix, and none of the key commands under the other
    assert under_shop.refused == {} and under_shop.refused_optional == {}
    assert {"GET", "SET", "HSET", "LPOP", "ZADD", "EVALSHA", "PUBLISH", "PSUBSCRIBE"} <= set(
        under_aury.refused
    )
    assert "PING" not in under_aury.refused


@pytest.mark.parametrize(("prefix", "status"), [("shop", "ok"), ("aury", "FAIL")])
def test_the_doctor_checks_the_acl_on_the_key_prefix(
    invoke: Invoke, redis_url: str, redis_client: redis.Redis, prefix: str, status: str
) -> None:
    # Given a user limited to the prefix "shop", checked from the admin connection
    redis_client.execute_command(
        "ACL", "SETUSER", "doctor-prefix", "on", "nopass", *acl_rules(KeySpace("shop")).split()
    )
    try:
        # When the doctor checks it under TASK_KEY_PREFIX
        env = {"TASK_BROKER_URL": redis_url, "TASK_KEY_PREFIX": prefix}
        result = invoke("doctor", "--modules", str(FIXTURE_MODULES), "--acl-user", "doctor-prefix", env=env)
    finally:
        redis_client.acl_deluser("doctor-prefix")

    # Then under its own prefix it may run everything; under another one the ACL check fails
    checks = {check: (state, detail) for state, check, detail in findings(result.stdout)}
    assert f"keys under {prefix}:" in checks["settings"][1]
    assert checks["broker acl"][0] == status
    assert f"{prefix}:*" in checks["broker acl"][1]
    assert result.exit_code == (0 if status == "ok" else 1)


def test_acl_user_checks_another_user_from_an_admin_connection(
    invoke: Invoke, redis_url: str, redis_client: redis.Redis
) -> None:
    # Given a user that may not publish, and the doctor connected as the default (admin) user
    redis_client.acl_setuser(
        "doctor-other", enabled=True, keys=["*"], channels=["*"], commands=["+@all", "-publish"]
    )
    try:
        # When the doctor checks that user
        result = invoke("doctor", "--modules", str(FIXTURE_MODULES), "--acl-user", "doctor-other",
                        env={"TASK_BROKER_URL": redis_url})  # fmt: skip
    finally:
        redis_client.acl_deluser("doctor-other")

    # Then that user's refusal is reported
    assert result.exit_code == 1
    assert any(
        status == "FAIL"
        and check == "broker acl"
        and detail.startswith("user doctor-other may not run PUBLISH")
        for status, check, detail in findings(result.stdout)
    )
