"""The shadow topic in the contract: same key and schema as production's, and planning never
subscribes to it."""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

from services.control.settings import ControlSettings
from services.messages import (
    MODEL_DEPLOYMENTS,
    PERCEPTION_OBJECTS,
    PERCEPTION_OBJECTS_SHADOW,
    DeploymentAction,
    ModelDeployment,
    topic,
)
from services.messages.registry import payload_models
from services.perception.shadow import SHADOW_NICE, lowest_cpu_priority
from services.planning.service import build
from services.settings import Settings


def test_shadow_topic_has_production_key_and_schema() -> None:
    shadow = topic("perception.objects.shadow")
    assert shadow is PERCEPTION_OBJECTS_SHADOW
    assert (shadow.key, shadow.value, shadow.schema_version) == (
        PERCEPTION_OBJECTS.key, PERCEPTION_OBJECTS.value, PERCEPTION_OBJECTS.schema_version)
    assert shadow.rate_hz is None  # sampled when behind, only while a shadow runs
    assert "planning" not in shadow.consumers
    assert len(payload_models()) == len(set(payload_models()))  # one model, listed once


def test_planning_subscribes_to_production_objects_only() -> None:
    built = build(Settings(torch_threads=1), "localhost:9092",
                  control=ControlSettings.ephemeral())
    # FastStream's Kafka subscribers name their topics (not on the generic subscriber type)
    subscribed = {name for s in built.runtime.broker.subscribers
                  for name in getattr(s, "topic_names")}  # noqa: B009
    assert PERCEPTION_OBJECTS.name in subscribed
    assert PERCEPTION_OBJECTS_SHADOW.name not in subscribed
    # safety.events: only for the simulator's run_finished (services/planning/service.py)
    assert subscribed == {"perception.objects", "vehicle.state", "safety.events"}


def test_shadow_actions_are_schema_version_2() -> None:
    command = ModelDeployment(version="v2", path="v2.pt", sha256="ab" * 32,
                              action=DeploymentAction.SHADOW, stage="candidate", stamp_ns=1)
    assert command.schema_version == MODEL_DEPLOYMENTS.schema_version == 2
    assert ModelDeployment.decode(command.encode()).action is DeploymentAction.SHADOW


def test_the_shadow_thread_runs_at_the_lowest_cpu_priority() -> None:
    """The scheduling half of "production first": the shadow's thread, and only it, at nice 19
    (Linux keeps a nice value per thread)."""

    def nice() -> int:
        return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    before = nice()
    with ThreadPoolExecutor(max_workers=1, initializer=lowest_cpu_priority) as pool:
        assert pool.submit(nice).result() == SHADOW_NICE
    assert nice() == before  # the calling (production's) thread keeps its own
