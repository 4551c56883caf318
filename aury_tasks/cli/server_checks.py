"""What the commands that start something check of their Redis servers first: reached, and safe.

``aum worker``, ``aum run``, ``aum scheduler``, ``aum serve`` and ``aum doctor`` reach the broker
(:func:`reach_broker`) so that a wrong password or an old server is one line at start, not a
worker that restarts its consumers for ever; the worker also says what is risky about them
(:func:`warn_about_redis`); on RabbitMQ it declares its queues and checks their consumer timeout
(:func:`check_rabbitmq`).
"""

from __future__ import annotations

import contextlib

import redis
from dramatiq.brokers.redis import RedisBroker
from loguru import logger
from redis.exceptions import AuthorizationError

from ..broker.redis.checks import MIN_REDIS_VERSION, redis_warnings, too_old
from ..core.errors import BrokerUnavailable, ConfigError, LedgerUnavailable
from ..core.redaction import redact_text
from ..tasks.manager import TaskManager


def reach_broker(tm: TaskManager) -> None:
    """Make sure the broker's Redis answers and takes the credentials, before any process starts.

    A worker that cannot log in would otherwise restart its consumers every few seconds for
    ever. Once running, a worker rides out a Redis restart by itself.

    Raises:
      ConfigError: the server refused the URL's credentials (a wrong or missing password), or is
        older than Redis 6.2.
      BrokerUnavailable: the server could not be reached (after the client's bounded retries).
    """
    if not isinstance(tm.broker, RedisBroker):
        return
    shown = tm.broker_info.display_url
    try:
        tm.broker.client.ping()
        version = too_old(tm.broker.client)
        if version is not None:
            wanted = ".".join(map(str, MIN_REDIS_VERSION))
            raise ConfigError(f"invalid setting TASK_BROKER_URL: {shown} is Redis {version}; "
                              f"aury-tasks needs Redis {wanted} or later (or Valkey)")  # fmt: skip
    except (redis.AuthenticationError, AuthorizationError, redis.ResponseError) as exc:
        text = str(exc)
        if isinstance(exc, redis.ResponseError) and not ("NOAUTH" in text or "WRONGPASS" in text):
            raise
        if not tm.broker.client.connection_pool.connection_kwargs.get("password"):
            raise ConfigError(f"invalid setting TASK_BROKER_URL: {shown} wants a password") from None
        raise ConfigError(
            f"invalid setting TASK_BROKER_URL: {shown} refused its credentials ({redact_text(text)[:120]})"
        ) from None
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise BrokerUnavailable(f"broker {shown} unreachable ({redact_text(str(exc))})") from None


def warn_about_redis(tm: TaskManager) -> None:
    """Say once, at start, what is risky about the Redis servers the worker uses (none: nothing).

    The ledger is checked apart only when ``TASK_RESULT_BACKEND_URL`` puts it on its own server.
    An unreachable server is skipped here: the worker's own connection errors say so.
    """
    servers: list[tuple[str, redis.Redis]] = []
    if isinstance(tm.broker, RedisBroker):
        servers.append(("broker", tm.broker.client))
    if tm.settings.result_backend_url_value:
        with contextlib.suppress(LedgerUnavailable):
            servers.append(("ledger", tm.store.client))
    for role, client in servers:
        try:
            warnings = redis_warnings(client, role=role)
        except redis.RedisError:
            continue
        for warning in warnings:
            logger.warning(warning)


def check_rabbitmq(tm: TaskManager, queues: list[str]) -> None:
    """On a RabbitMQ broker: declare the queues the worker consumes, and warn about its timeout.

    A queue RabbitMQ refuses to declare (another type, another ``x-max-priority``) is one line at
    start rather than consumers restarting for ever. The warning names the tasks (any of them may
    be sent to the worker's queues) whose time limit is over the server's ``consumer_timeout``
    (``TASK_RABBITMQ_CONSUMER_TIMEOUT_MS``: a client cannot read the server's), which RabbitMQ
    would deliver again while they run.

    Raises:
      ConfigError: RabbitMQ refused to declare a queue.
      BrokerUnavailable: RabbitMQ could not be reached.
    """
    if tm.broker_info.kind != "rabbitmq":
        return
    from dramatiq.errors import ConnectionClosed

    from ..broker.rabbitmq import AuryRabbitmqBroker, consumer_timeout_warning  # pika: only here

    broker = tm.broker
    if not isinstance(broker, AuryRabbitmqBroker):
        return
    try:
        for queue in queues:
            broker.declare_queue(queue, ensure=True)
    except ConnectionClosed as exc:
        raise BrokerUnavailable(
            f"broker {tm.broker_info.display_url} unreachable ({redact_text(str(exc))})"
        ) from None
    limits = {task.name: int(task.options.get("time_limit", 0)) for task in tm.tasks.values()}
    warning = consumer_timeout_warning(limits, tm.settings.rabbitmq_consumer_timeout_ms)
    if warning is not None:
        logger.warning(warning)
