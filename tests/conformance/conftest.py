"""The fixtures Dramatiq's ``test_redis.py`` and ``test_actors.py`` use, on aury-tasks's broker.

Dramatiq's own ``tests/conftest.py`` is not in its sdist: these fixtures do what its fixtures do,
except that ``redis_broker`` is :class:`~aury_tasks.broker.redis.broker.AuryRedisBroker`, built
as :func:`aury_tasks.broker.build.open_broker` builds it, on the session's embedded server on a
private port (flushed before and after each test), never the machine's Redis.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import dramatiq
import dramatiq.broker
import pytest
from dramatiq.brokers.stub import StubBroker

from aury_tasks.broker.build import redis_client
from aury_tasks.broker.redis.broker import MAINTENANCE_INTERVAL, AuryRedisBroker
from aury_tasks.config.settings import get_settings
from aury_tasks.core import keys

from .differences import NAMESPACE_REASON, NAMESPACE_XFAILS, SKIPS

#: Dramatiq's default namespace, whose keys (``dramatiq:...``) some of its tests read themselves.
DRAMATIQ_NAMESPACE = "dramatiq"
#: The broker's namespace here: Dramatiq's, as its tests read its keys themselves (every script of
#: the broker honours ``namespace=``, the key prefix).
NAMESPACE = DRAMATIQ_NAMESPACE


def aury_broker(url: str) -> AuryRedisBroker:
    """The broker ``open_broker`` builds for ``url`` (default settings), with Dramatiq's default
    middleware as Dramatiq's ``RedisBroker()`` has them."""
    settings = get_settings()
    return AuryRedisBroker(
        client=redis_client(url),
        namespace=NAMESPACE,
        heartbeat_timeout=int(settings.heartbeat_timeout * 1000),
        dead_message_ttl=keys.DEAD_MESSAGE_TTL_MS,
        maintenance_interval=MAINTENANCE_INTERVAL,
        max_deliveries=settings.max_deliveries,
    )


def installed(broker: dramatiq.Broker) -> Iterator[dramatiq.Broker]:
    """``broker`` booted and made Dramatiq's global broker for the test, then closed."""
    previous = dramatiq.broker.global_broker
    broker.emit_after("process_boot")
    dramatiq.set_broker(broker)
    try:
        yield broker
    finally:
        broker.close()
        dramatiq.broker.global_broker = previous


@pytest.fixture
def redis_broker(redis_url: str) -> Iterator[dramatiq.Broker]:
    """Dramatiq's ``redis_broker``: here aury-tasks's broker on the test Redis."""
    yield from installed(aury_broker(redis_url))


@pytest.fixture
def redis_worker(redis_broker: dramatiq.Broker) -> Iterator[dramatiq.Worker]:
    """Dramatiq's ``redis_worker``: 32 threads, Dramatiq's default worker timeout."""
    worker = dramatiq.Worker(redis_broker, worker_threads=32)
    worker.start()
    yield worker
    worker.stop()


@pytest.fixture
def stub_broker() -> Iterator[dramatiq.Broker]:
    """Dramatiq's ``stub_broker`` (a module may override it with aury-tasks's broker)."""
    broker = StubBroker()
    yield from installed(broker)
    broker.flush_all()


@pytest.fixture
def stub_worker(stub_broker: dramatiq.Broker) -> Iterator[dramatiq.Worker]:
    """Dramatiq's ``stub_worker``: 32 threads, a 100 ms worker timeout."""
    worker = dramatiq.Worker(stub_broker, worker_timeout=100, worker_threads=32)
    worker.start()
    yield worker
    worker.stop()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Skip each test of :data:`~conformance.differences.SKIPS` with the difference it names;
    xfail those of ``NAMESPACE_XFAILS`` while the broker is not on Dramatiq's namespace."""
    here = Path(__file__).parent
    for item in items:
        if item.path.parent != here:
            continue
        module = item.path.stem
        difference = SKIPS.get(module, {}).get(item.name)
        if difference is not None:
            item.add_marker(pytest.mark.skip(reason=difference.reason))
        elif NAMESPACE != DRAMATIQ_NAMESPACE and item.name in NAMESPACE_XFAILS.get(module, ()):
            item.add_marker(pytest.mark.xfail(reason=NAMESPACE_REASON, strict=False))
