"""The RabbitMQ broker's own parts, without a server: its queue arguments, refusals and warnings.

Dramatiq's ``RabbitmqBroker`` connects on first use only, so these build one and never reach it;
``tests/integration/test_rabbitmq.py`` runs the same broker against a real RabbitMQ. (pika is a
dev dependency.)
"""

from __future__ import annotations

import dramatiq
import pytest

from aury_tasks import BrokerFeatureUnsupported, ConfigError, TaskSettings
from aury_tasks.broker.build import open_broker
from aury_tasks.broker.rabbitmq import (
    DEFAULT_CONSUMER_TIMEOUT_MS,
    AuryRabbitmqBroker,
    DeliveryLimit,
    consumer_timeout_warning,
    split_queue_type,
)

URL = "amqp://guest:guest@127.0.0.1:5672"


def test_queue_type_comes_from_the_url_else_the_setting_and_leaves_the_url() -> None:
    # Given URLs with and without a queue_type, then a setting's default
    # When their queue type is read
    # Then the URL's wins, the parameter is taken out (pika knows none such), others stay
    assert split_queue_type(f"{URL}/?queue_type=quorum&heartbeat=30", "classic") == (
        f"{URL}/?heartbeat=30",
        "quorum",
    )
    assert split_queue_type(f"{URL}/?queue_type=Classic", "quorum") == (f"{URL}/", "classic")
    assert split_queue_type(URL, "quorum") == (URL, "quorum")


def test_a_wrong_queue_type_names_the_setting() -> None:
    with pytest.raises(
        ConfigError, match=r"invalid setting TASK_BROKER_URL: queue_type is classic or quorum"
    ):
        split_queue_type(f"{URL}/?queue_type=stream", "classic")
    with pytest.raises(
        ConfigError, match="invalid setting TASK_RABBITMQ_QUEUE_TYPE: expected classic or quorum"
    ):
        TaskSettings.load(_env_file=None, rabbitmq_queue_type="stream")


def test_quorum_queues_declare_their_type_on_the_queue_its_delay_and_dead_letter_queues() -> None:
    # Given a broker of quorum queues, and one of classic queues with a maximum priority
    quorum = AuryRabbitmqBroker(url=URL, queue_type="quorum")
    classic = AuryRabbitmqBroker(url=URL, max_priority=9)

    # When the arguments Dramatiq declares its queues with are built
    quorum_queue = quorum._build_queue_arguments("emails")
    classic_queue = classic._build_queue_arguments("emails")

    # Then the quorum queue is typed, still dead-lettering to its .XQ queue, with a delivery limit
    # of TASK_MAX_DELIVERIES (5); its delay queue is typed, with no delivery limit (a worker gives
    # its held delayed messages back whenever it stops); its .XQ queue is typed as well
    assert quorum_queue == {
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": "emails.XQ",
        "x-queue-type": "quorum",
        "x-delivery-limit": 5,
    }
    assert quorum.delay_queue_arguments("emails", {"x-dead-letter-routing-key": "emails.XQ"}) == {
        "x-dead-letter-routing-key": "emails.XQ",
        "x-queue-type": "quorum",
    }
    assert quorum.dead_letter_queue_arguments("emails", {"x-message-ttl": 1}) == {
        "x-message-ttl": 1,
        "x-queue-type": "quorum",
    }
    # ... and the classic one is Dramatiq's, with its x-max-priority
    assert classic_queue == {
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": "emails.XQ",
        "x-max-priority": 9,
    }
    assert classic.dead_letter_queue_arguments("emails", {"x-message-ttl": 1}) == {"x-message-ttl": 1}


def test_a_maximum_priority_on_quorum_queues_is_refused_naming_the_setting() -> None:
    with pytest.raises(ConfigError, match="invalid setting TASK_RABBITMQ_MAX_PRIORITY: quorum queues"):
        AuryRabbitmqBroker(url=URL, queue_type="quorum", max_priority=9)


@pytest.mark.parametrize(
    ("queue_type", "instead"),
    [("classic", "set TASK_RABBITMQ_MAX_PRIORITY"), ("quorum", "quorum queues have no priorities")],
)
def test_a_priority_the_queues_cannot_honour_is_refused_before_anything_is_sent(
    queue_type: str, instead: str
) -> None:
    # Given a RabbitMQ broker whose queues have no priority (no server: nothing may be reached)
    broker = AuryRabbitmqBroker(url="amqp://guest:guest@127.0.0.1:1", queue_type=queue_type)
    message = dramatiq.Message(
        queue_name="emails", actor_name="mail.send", args=(), kwargs={}, options={"broker_priority": 9}
    )

    # When a message with a priority is enqueued
    with pytest.raises(BrokerFeatureUnsupported) as caught:
        broker.enqueue(message)

    # Then it is refused in one line naming the feature, the broker and what to do
    assert caught.value.feature == "task priority (mail.send)"
    assert caught.value.message.startswith("task priority (mail.send) is not supported on a RabbitMQ broker")
    assert instead in caught.value.message
    assert "docs/operating.md, Brokers" in caught.value.message


def test_open_broker_takes_the_queue_type_and_priority_from_the_settings() -> None:
    # Given settings of quorum queues, and a URL that asks for classic ones with a priority
    quorum = TaskSettings.load(_env_file=None, rabbitmq_queue_type="quorum")
    prioritized = TaskSettings.load(_env_file=None, rabbitmq_queue_type="quorum", rabbitmq_max_priority=5)

    # When brokers are opened (nothing is reached before a send)
    by_setting = open_broker(quorum, URL, []).broker
    by_url = open_broker(prioritized, f"{URL}/?queue_type=classic", []).broker

    # Then each has its queue type and priority, and the URL's parameter is not pika's
    assert isinstance(by_setting, AuryRabbitmqBroker) and isinstance(by_url, AuryRabbitmqBroker)
    assert (by_setting.queue_type, by_setting.max_priority) == ("quorum", None)
    assert (by_url.queue_type, by_url.max_priority) == ("classic", 5)
    with pytest.raises(ConfigError, match="TASK_RABBITMQ_MAX_PRIORITY"):
        open_broker(prioritized, URL, [])


def test_the_consumer_timeout_warning_names_each_task_that_may_run_longer() -> None:
    # Given tasks' time limits, two of them over RabbitMQ's default consumer_timeout (30 minutes)
    limits = {"a.short": 600_000, "a.long": 3_600_000, "a.longest": 7_200_000, "a.exact": 1_800_000}

    # When the worker checks them against it
    warning = consumer_timeout_warning(limits, DEFAULT_CONSUMER_TIMEOUT_MS)

    # Then one line names those two, longest first, with the setting that states the timeout
    assert warning is not None and "\n" not in warning
    assert "a.longest (7200 s), a.long (3600 s)" in warning
    assert "a.short" not in warning and "a.exact" not in warning
    assert "consumer_timeout (1800 s, TASK_RABBITMQ_CONSUMER_TIMEOUT_MS)" in warning


def test_no_consumer_timeout_warning_when_every_task_fits_or_the_server_has_none() -> None:
    assert consumer_timeout_warning({"a.short": 600_000}, DEFAULT_CONSUMER_TIMEOUT_MS) is None
    assert consumer_timeout_warning({"a.long": 3_600_000}, 0) is None
    assert TaskSettings.load(_env_file=None).rabbitmq_consumer_timeout_ms == DEFAULT_CONSUMER_TIMEOUT_MS


def test_quorum_queues_put_the_delivery_limit_first_and_classic_ones_have_none() -> None:
    from dramatiq.middleware import AgeLimit

    # Given brokers of quorum and classic queues over the same middleware
    quorum = AuryRabbitmqBroker(url=URL, queue_type="quorum", middleware=[AgeLimit()], max_deliveries=3)
    classic = AuryRabbitmqBroker(url=URL, middleware=[AgeLimit()], max_deliveries=3)

    # Then the quorum one checks the delivery limit before any other middleware, the classic one not
    first = quorum.middleware[0]
    assert isinstance(first, DeliveryLimit) and first.max_deliveries == 3
    assert not any(isinstance(m, DeliveryLimit) for m in classic.middleware)
    # ... and only the quorum one reads delivery counts off its deliveries
    assert quorum.consumer_class is not classic.consumer_class


def test_a_delivery_under_the_limit_passes_and_one_at_it_is_failed_and_skipped() -> None:
    from dramatiq.broker import MessageProxy
    from dramatiq.middleware import SkipMessage

    limit = DeliveryLimit(3)
    broker = AuryRabbitmqBroker(url=URL, queue_type="quorum")

    def delivery(count: int | None) -> MessageProxy:
        proxy = MessageProxy(dramatiq.Message("q", "a", (), {}, {}))
        if count is not None:
            vars(proxy)["aury_delivery_count"] = count
        return proxy

    # When deliveries with no count (a classic queue), 2 and 3 earlier deliveries come
    for passing in (delivery(None), delivery(2)):
        limit.before_process_message(broker, passing)
        assert not passing.failed
    at_limit = delivery(3)
    with pytest.raises(SkipMessage, match=r"^redelivery_limit: 3 deliveries ended unacknowledged"):
        limit.before_process_message(broker, at_limit)

    # Then only the last is failed (its worker nacks it to .XQ)
    assert at_limit.failed
