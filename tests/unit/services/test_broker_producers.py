"""The idempotence decision (services.broker.producers) and how it reaches the producers."""

from __future__ import annotations

from typing import Any, ClassVar

import pytest
from aiokafka import errors as kafka_errors

from services.broker import producers
from services.broker.clients import producer_kwargs, topic_configs
from services.broker.producers import (
    IdempotenceVerdict,
    ProbingKafkaBroker,
    probe_idempotence,
    verdict_for,
)
from services.settings import Settings, SettingsError, load_settings

LOADING = kafka_errors.CoordinatorLoadInProgressError.errno


def test_a_granted_producer_id_turns_idempotence_on() -> None:
    verdict = verdict_for(0)
    assert verdict == IdempotenceVerdict(True, "the cluster granted a producer id")


@pytest.mark.parametrize(("code", "named"), [
    (None, "API key 22"),                                                   # not offered
    (kafka_errors.UnknownError.errno, "UnknownError"),                      # the embedded broker
    (kafka_errors.ClusterAuthorizationFailedError.errno, "ClusterAuthorizationFailed"),  # ACLs
    (kafka_errors.UnsupportedVersionError.errno, "UnsupportedVersion"),
])
def test_a_refusal_leaves_idempotence_off_and_says_why(code: int | None, named: str) -> None:
    verdict = verdict_for(code)
    assert verdict is not None
    assert verdict.idempotent is False
    assert named in verdict.reason


def test_a_retriable_answer_means_ask_again() -> None:
    assert kafka_errors.for_code(LOADING).retriable
    assert verdict_for(LOADING) is None


class FakeClient:
    """Stands in for aiokafka's client: answers InitProducerId with scripted error codes."""

    answers: ClassVar[list[int | Exception]] = []
    closed: ClassVar[bool] = False

    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs

    async def bootstrap(self) -> None:
        return None

    def get_random_node(self) -> int:
        return 1

    async def send(self, node_id: int, request: Any) -> Any:
        assert request.API_KEY == 22
        answer = FakeClient.answers.pop(0) if len(FakeClient.answers) > 1 else FakeClient.answers[0]
        if isinstance(answer, Exception):
            raise answer

        class Response:
            error_code = answer

        return Response()

    async def close(self) -> None:
        FakeClient.closed = True


@pytest.fixture
def fake_client(monkeypatch: pytest.MonkeyPatch) -> type[FakeClient]:
    monkeypatch.setattr(producers, "AIOKafkaClient", FakeClient)
    FakeClient.closed = False
    return FakeClient


async def test_probe_asks_again_while_the_cluster_is_loading(fake_client: type[FakeClient]) -> None:
    fake_client.answers = [LOADING, LOADING, 0]
    verdict = await probe_idempotence(Settings(), "k:9092", timeout_s=5)
    assert verdict.idempotent is True
    assert fake_client.closed


async def test_probe_gives_up_on_a_cluster_that_keeps_loading(
        fake_client: type[FakeClient]) -> None:
    fake_client.answers = [LOADING]
    verdict = await probe_idempotence(Settings(), "k:9092", timeout_s=0.5)
    assert verdict.idempotent is False
    assert kafka_errors.for_code(LOADING).__name__ in verdict.reason
    assert fake_client.closed


async def test_probe_treats_an_api_the_broker_lacks_as_no(fake_client: type[FakeClient]) -> None:
    fake_client.answers = [kafka_errors.IncompatibleBrokerVersion("no InitProducerId")]
    verdict = await probe_idempotence(Settings(), "k:9092", timeout_s=5)
    assert verdict.idempotent is False


async def test_probe_lets_a_connection_failure_through(fake_client: type[FakeClient]) -> None:
    fake_client.answers = [kafka_errors.KafkaConnectionError("refused")]
    with pytest.raises(kafka_errors.KafkaConnectionError):
        await probe_idempotence(Settings(), "k:9092", timeout_s=5)
    assert fake_client.closed


@pytest.mark.parametrize("granted", [True, False])
async def test_the_faststream_producer_gets_the_decision(monkeypatch: pytest.MonkeyPatch,
                                                         granted: bool) -> None:
    asked: list[str] = []

    async def probe(settings: Settings, bootstrap: str) -> IdempotenceVerdict:
        asked.append(bootstrap)
        return IdempotenceVerdict(granted, "scripted")

    monkeypatch.setattr(producers, "probe_idempotence", probe)
    broker = ProbingKafkaBroker(Settings(), "k1:9092,k2:9092", "planning", acks="all")
    built: dict[str, Any] = {}

    async def connect(**kwargs: Any) -> None:  # where FastStream builds its AIOKafkaProducer
        built.update(kwargs)

    monkeypatch.setattr(broker.config, "connect", connect)
    await broker.connect()
    assert asked == ["k1:9092,k2:9092"]
    assert built["enable_idempotence"] is granted
    assert built["acks"] == "all"
    assert broker.verdict == IdempotenceVerdict(granted, "scripted")


def test_producer_options() -> None:
    s = Settings()
    assert producer_kwargs(s, idempotent=True)["enable_idempotence"] is True
    assert producer_kwargs(s)["enable_idempotence"] is False
    assert producer_kwargs(s, idempotent=True)["acks"] == "all"


def test_min_insync_replicas_reaches_new_topics_only_when_set() -> None:
    assert "min.insync.replicas" not in topic_configs(Settings())
    s = Settings(topic_replication=3, topic_min_insync_replicas=2)
    assert topic_configs(s)["min.insync.replicas"] == "2"


def test_min_insync_replicas_above_replication_is_refused() -> None:
    with pytest.raises(SettingsError, match="topic_min_insync_replicas=3 exceeds topic_replication=2"):
        load_settings(topic_replication=2, topic_min_insync_replicas=3)
