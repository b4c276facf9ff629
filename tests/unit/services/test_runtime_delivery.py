"""Which failures are poison and which an outage, and the retry backoff's bound."""

from __future__ import annotations

import pytest
from aiokafka.errors import (
    CorruptRecordException,
    KafkaConnectionError,
    KafkaTimeoutError,
    LeaderNotAvailableError,
    MessageSizeTooLargeError,
    NodeNotReadyError,
    NotLeaderForPartitionError,
    RecordTooLargeError,
    RequestTimedOutError,
    TopicAuthorizationFailedError,
)

from services.messages import MessageError
from services.runtime.delivery import Backoff, is_infrastructure_error, is_record_error


@pytest.mark.parametrize("error", [
    MessageSizeTooLargeError("The message is 10485860 bytes when serialized"),
    RecordTooLargeError(), CorruptRecordException()])
def test_record_level_produce_errors_are_poison_not_an_outage(error: Exception) -> None:
    assert is_record_error(error)
    assert not is_infrastructure_error(error)


@pytest.mark.parametrize("error", [
    KafkaConnectionError("Unable to bootstrap"), RequestTimedOutError(), NodeNotReadyError(),
    LeaderNotAvailableError(), NotLeaderForPartitionError(), KafkaTimeoutError(),
    ConnectionResetError(), TopicAuthorizationFailedError()])
def test_failures_to_reach_the_cluster_are_retried(error: Exception) -> None:
    assert is_infrastructure_error(error)
    assert not is_record_error(error)


@pytest.mark.parametrize("error", [MessageError("Invalid JSON"), ValueError("bad"),
                                   KeyError("x")])
def test_a_handlers_own_errors_are_neither(error: Exception) -> None:
    assert not is_infrastructure_error(error)
    assert not is_record_error(error)


def test_backoff_doubles_from_its_start_and_never_exceeds_its_cap() -> None:
    backoff = Backoff(max_s=5.0, initial_s=0.1)
    delays = [backoff.next_delay_s() for _ in range(2000)]
    assert delays[:7] == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 5.0])
    assert max(delays) == 5.0
    assert delays[-1] == 5.0  # a long outage stays at the cap (no overflow)


def test_a_success_starts_the_next_outage_from_the_start() -> None:
    backoff = Backoff(max_s=5.0, initial_s=0.1)
    for _ in range(10):
        backoff.next_delay_s()
    backoff.reset()
    assert backoff.next_delay_s() == pytest.approx(0.1)


def test_a_backoff_must_start_below_its_cap() -> None:
    with pytest.raises(ValueError, match="initial_s"):
        Backoff(max_s=0.05, initial_s=0.1)
