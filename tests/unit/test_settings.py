"""Settings: defaults, one-line errors naming the variable, ``.env``, and masked passwords."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr

from aury_tasks import ConfigError, RunMode, SettingsSnapshot, TaskSettings, get_settings
from aury_tasks.core.redaction import redact_text, redact_url


def test_defaults_without_any_variable() -> None:
    # Given no TASK_* variable (the autouse fixture removed them) and no .env
    # When the settings are read
    settings = TaskSettings.load(_env_file=None)

    # Then every setting has its documented default
    assert settings.broker_url is None
    assert settings.broker_url_value is None
    assert settings.result_backend_url is None
    assert settings.queue_name == "default"
    assert settings.max_workers == 8
    assert settings.timeout == 600
    assert settings.max_retries == 3
    assert settings.retry_delay == 30
    assert settings.max_retry_delay == 3600
    assert settings.heartbeat_timeout == 15
    assert settings.modules_dir == "modules"
    assert settings.data_dir == ".aum"
    assert settings.log_level == "INFO"
    assert settings.log_json is False
    assert settings.run_mode is RunMode.PRODUCER


def test_variables_are_read_and_converted(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given valid values in the environment, a lowercase log level and a blank result backend URL
    monkeypatch.setenv("TASK_BROKER_URL", "redis://:hunter2@cache:6379/0")
    monkeypatch.setenv("TASK_RESULT_BACKEND_URL", "  ")
    monkeypatch.setenv("TASK_MAX_WORKERS", "16")
    monkeypatch.setenv("TASK_TIMEOUT", "2.5")
    monkeypatch.setenv("TASK_LOG_LEVEL", "debug")
    monkeypatch.setenv("TASK_LOG_JSON", "true")
    monkeypatch.setenv("TASK_RUN_MODE", "eager")

    # When the settings are read
    settings = TaskSettings.load(_env_file=None)

    # Then they are typed, the URL is a secret and a blank URL means unset
    assert isinstance(settings.broker_url, SecretStr)
    assert "hunter2" not in repr(settings)
    assert settings.broker_url_value == "redis://:hunter2@cache:6379/0"
    assert settings.result_backend_url is None
    assert settings.max_workers == 16
    assert settings.timeout == 2.5
    assert settings.log_level == "DEBUG"
    assert settings.log_json is True
    assert settings.run_mode is RunMode.EAGER


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("TASK_TIMEOUT", "abc", "a number of seconds greater than 0"),
        ("TASK_TIMEOUT", "0", "a number of seconds greater than 0"),
        ("TASK_MAX_WORKERS", "0", "a whole number from 1 to 1024"),
        ("TASK_MAX_WORKERS", "2000", "a whole number from 1 to 1024"),
        ("TASK_MAX_RETRIES", "-1", "a whole number, 0 or more"),
        ("TASK_BROKER_URL", "ftp://x", "a URL starting with redis://"),
        ("TASK_RESULT_BACKEND_URL", "amqp://h", "a URL starting with redis://"),
        ("TASK_RUN_MODE", "nope", "one of worker, producer, eager"),
        ("TASK_LOG_LEVEL", "LOUD", "one of TRACE, DEBUG, INFO"),
        ("TASK_LOG_JSON", "maybe", "true or false"),
        ("TASK_QUEUE_NAME", "bad name", "a queue name of letters, digits"),
    ],
)
def test_a_wrong_value_names_the_variable_and_the_expected_form(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, expected: str
) -> None:
    # Given one wrong value
    monkeypatch.setenv(variable, value)

    # When the settings are read
    with pytest.raises(ConfigError) as caught:
        TaskSettings.load(_env_file=None)

    # Then the error is one line naming the variable, the expected form and the value given
    message = caught.value.message
    assert "\n" not in message
    assert message.startswith(f"invalid setting {variable}: expected ")
    assert expected in message
    assert repr(value) in message
    assert caught.value.exit_code == 2
    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize(
    ("variable", "url"),
    [
        ("TASK_BROKER_URL", "ftp://u:hunter2@h"),
        ("TASK_BROKER_URL", "ftp://:hunter2@h:21/x"),
        ("TASK_RESULT_BACKEND_URL", "amqp://guest:hunter2@rabbit:5672/"),
        ("TASK_BROKER_URL", "redis+sentinel://:hunter2@s1:26379,s2:x/mymaster/0"),
        ("TASK_RESULT_BACKEND_URL", "rediss+sentinel://:hunter2@s1:26379"),
    ],
)
def test_a_password_in_a_wrong_url_is_never_shown(
    monkeypatch: pytest.MonkeyPatch, variable: str, url: str
) -> None:
    # Given a URL with a password but a scheme that is not accepted
    monkeypatch.setenv(variable, url)

    # When the settings are read
    with pytest.raises(ConfigError) as caught:
        TaskSettings.load(_env_file=None)

    # Then the error names the variable and shows the URL with its password masked
    message = str(caught.value)
    assert variable in message
    assert "hunter2" not in message
    assert ":***@" in message
    assert "hunter2" not in repr(caught.value)


@pytest.mark.parametrize("variable", ["TASK_API_TOKEN", "TASK_API_READ_TOKEN"])
def test_a_too_short_api_token_is_refused_without_being_shown(
    monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    # Given an API token too short to be safe
    monkeypatch.setenv(variable, "hunter2")

    # When the settings are read
    with pytest.raises(ConfigError) as caught:
        TaskSettings.load(_env_file=None)

    # Then the error names the variable and what it expects, never the token itself
    message = str(caught.value)
    assert variable in message and "16 characters" in message
    assert "hunter2" not in message


def test_get_settings_raises_the_same_one_line_error(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a wrong value
    monkeypatch.setenv("TASK_MAX_WORKERS", "many")

    # When the process-wide settings are read
    # Then the ConfigError comes without the pydantic error chained to it
    with pytest.raises(ConfigError, match="TASK_MAX_WORKERS") as caught:
        get_settings()
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__


def test_dotenv_in_the_working_directory_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a .env file in the working directory
    (tmp_path / ".env").write_text("TASK_QUEUE_NAME=from_dotenv\nTASK_MAX_RETRIES=7\nOTHER_APP_SETTING=1\n")
    monkeypatch.chdir(tmp_path)

    # When the settings are read, with one variable also in the environment
    monkeypatch.setenv("TASK_MAX_RETRIES", "9")
    settings = get_settings()

    # Then the file's values are used, the environment wins, and unrelated lines are ignored
    assert settings.queue_name == "from_dotenv"
    assert settings.max_retries == 9


def test_a_wrong_value_in_dotenv_names_the_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a .env file with a wrong value
    (tmp_path / ".env").write_text("TASK_TIMEOUT=soon\n")
    monkeypatch.chdir(tmp_path)

    # When / Then reading the settings names the variable
    with pytest.raises(ConfigError, match=r"^invalid setting TASK_TIMEOUT: expected a number"):
        TaskSettings.load()


def test_settings_are_read_once_until_the_cache_is_cleared(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given settings read once, in a directory without .env
    monkeypatch.chdir(tmp_path)
    assert get_settings().queue_name == "default"
    monkeypatch.setenv("TASK_QUEUE_NAME", "changed")

    # When the variable changes, the cached settings stay; after cache_clear they are re-read
    assert get_settings().queue_name == "default"
    get_settings.cache_clear()
    assert get_settings().queue_name == "changed"


def test_a_snapshot_carries_every_setting_through_json(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given settings with a value other than the default for each kind of field
    monkeypatch.setenv("TASK_BROKER_URL", "redis://:hunter2@cache:6379/0")
    monkeypatch.setenv("TASK_RESULT_BACKEND_URL", "redis://:other@ledger:6379/1")
    monkeypatch.setenv("TASK_SENTINEL_PASSWORD", "sentinel-secret")
    monkeypatch.setenv("TASK_TIMEOUT", "12.5")
    monkeypatch.setenv("TASK_MAX_WORKERS", "3")
    monkeypatch.setenv("TASK_LOG_JSON", "true")
    monkeypatch.setenv("TASK_RUN_MODE", "worker")
    settings = TaskSettings.load(_env_file=None)

    # When they are snapshot and the snapshot goes through JSON, as to a worker process
    snapshot = SettingsSnapshot.from_json(settings.snapshot().to_json())

    # Then every field has its value under its own name, URLs under their clear-text names
    assert snapshot == settings.snapshot()
    for name in TaskSettings.model_fields:
        if name.startswith("api_"):
            assert not hasattr(snapshot, name), name  # aum serve's settings, tokens among them
            continue
        attribute = f"{name}_value" if name.endswith(("_url", "_password")) else name
        assert getattr(snapshot, attribute) == getattr(settings, attribute), name
    assert snapshot.broker_url_value == "redis://:hunter2@cache:6379/0"
    assert snapshot.run_mode is RunMode.WORKER
    assert snapshot.timeout == 12.5
    # and its repr shows no URL, so no password
    assert "hunter2" not in repr(snapshot) and "other@" not in repr(snapshot)
    assert snapshot.sentinel_password_value == "sentinel-secret" and "sentinel-secret" not in repr(snapshot)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:hunter2@cache:6379/0", "redis://:***@cache:6379/0"),
        ("redis://user:hunter2@cache:6379/0", "redis://user:***@cache:6379/0"),
        ("amqp://guest:guest@127.0.0.1:5672", "amqp://guest:***@127.0.0.1:5672"),
        ("rediss://default:pa:ss/word@h:6380", "rediss://default:***@h:6380"),
        ("redis://:pa@ss@cache:6379/0", "redis://:***@cache:6379/0"),
        ("redis://:pw@cache/0?client_name=a@b", "redis://:***@cache/0?client_name=a@b"),
        ("unix:///run/redis.sock?db=0&password=hunter2", "unix:///run/redis.sock?db=0&password=***"),
        ("redis://cache:6379/0?password=hunter2&db=1", "redis://cache:6379/0?password=***&db=1"),
        (
            "redis+sentinel://:hunter2@s1:26379,s2:26379/mymaster/0",
            "redis+sentinel://:***@s1:26379,s2:26379/mymaster/0",
        ),
        ("rediss+sentinel://app:hunter2@s1,s2/mymaster", "rediss+sentinel://app:***@s1,s2/mymaster"),
        ("redis://user@cache:6379/0", "redis://user@cache:6379/0"),
        ("redis://cache:6379/0", "redis://cache:6379/0"),
        ("unix:///tmp/redis.sock?db=0", "unix:///tmp/redis.sock?db=0"),
    ],
)
def test_redact_url_masks_only_the_password(url: str, shown: str) -> None:
    # Given a URL, as text and as a secret
    # When it is redacted
    # Then only the password is masked
    assert redact_url(url) == shown
    assert redact_url(SecretStr(url)) == shown


def test_redact_url_of_nothing_is_empty() -> None:
    assert redact_url(None) == ""


def test_redact_text_masks_every_url_in_a_line() -> None:
    # Given a log line naming two URLs with passwords
    line = "moving from redis://:first@a:6379/0 to amqp://bob:second@b:5672/ now"

    # When it is redacted
    redacted = redact_text(line)

    # Then both passwords are masked and the rest is untouched
    assert redacted == "moving from redis://:***@a:6379/0 to amqp://bob:***@b:5672/ now"


def test_redact_text_leaves_text_without_urls_alone() -> None:
    text = "user:password@ without a scheme, and time 12:30@noon"
    assert redact_text(text) == text
