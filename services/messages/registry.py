"""The topic registry: every topic, its key, value type, schema version and expected rate.

This is the one place a topic name is spelled. Services, the embedded broker, the docs
generator and the tests all read it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from services.messages.base import Payload
from services.messages.frames import FRAME_SCHEMA_VERSION, HEADER_FIELDS, FrameMeta
from services.messages.payloads import (
    MODEL_DEPLOYMENTS_SCHEMA_VERSION,
    PERCEPTION_OBJECTS_SCHEMA_VERSION,
    GroundTruth,
    ModelDeployment,
    PerceptionObjects,
    PlanningTrajectory,
    SafetyEvent,
    VehicleControl,
    VehicleState,
)

DLQ_SUFFIX: Final = ".dlq"

#: Dead-letter headers, added to the original headers of a rejected message.
DLQ_HEADERS: Final = (
    "dlq-source-topic",
    "dlq-source-partition",
    "dlq-source-offset",
    "dlq-error-class",
    "dlq-error-message",
    "dlq-service",
    "dlq-stamp-ns",
)

#: Headers of a dead letter whose full copy the broker refused (too large, invalid), added to
#: DLQ_HEADERS on the truncated copy sent instead: that it was cut, the original value's size
#: [bytes] and why the full copy was refused.
DLQ_TRUNCATION_HEADERS: Final = ("dlq-truncated", "dlq-original-bytes", "dlq-produce-error")

#: Signature headers of `vehicle.control` (HMAC-SHA256 over key id, epoch, counter and value;
#: services/control/signing.py defines the layout). `safety.events` carries the same four,
#: under a MAC domain of its own (services/runtime/event_signing.py).
CONTROL_SIGNATURE_HEADERS: Final = ("sig-key-id", "sig-epoch", "sig-counter", "sig-mac")


@dataclass(frozen=True)
class TopicSpec:
    """One Kafka topic of the contract.

    `value` is the pydantic payload of JSON topics, or None when the value is raw bytes
    (camera frames: the image; DLQ topics: the original bytes). `rate_hz` is the expected
    steady rate per key; None means event-driven (no liveness expectation). `headers` names
    the topic's own headers, always written; `optional_headers` those a producer may leave out.
    Each has its value schema in services/messages/headers.py, which `roadstream docs`
    publishes.
    """

    name: str
    key: str
    value: type[Payload] | None
    schema_version: int
    rate_hz: float | None
    description: str
    producers: tuple[str, ...]
    consumers: tuple[str, ...]
    headers: tuple[str, ...] = ()
    optional_headers: tuple[str, ...] = ()
    header_model: type[FrameMeta] | None = None
    content_types: tuple[str, ...] = ("application/json",)
    dead_letter: bool = field(default=False)

    @property
    def dlq(self) -> str:
        """Name of this topic's dead-letter topic."""
        return self.name + DLQ_SUFFIX

    @property
    def period_s(self) -> float | None:
        """Expected period between messages per key [s], or None if event-driven."""
        return None if not self.rate_hz else 1.0 / self.rate_hz


CAMERA_FRAMES = TopicSpec(
    name="camera.frames",
    key="vehicle_id/camera_id",
    value=None,
    schema_version=FRAME_SCHEMA_VERSION,
    rate_hz=20.0,
    description="Encoded camera images (JPEG by default, PNG allowed); metadata in headers.",
    producers=("simulator", "replay", "video ingest"),
    consumers=("perception", "recorder"),
    headers=tuple(HEADER_FIELDS),
    header_model=FrameMeta,
    content_types=("image/jpeg", "image/png"),
)
VEHICLE_STATE = TopicSpec(
    name="vehicle.state",
    key="vehicle_id",
    value=VehicleState,
    schema_version=1,
    rate_hz=20.0,
    description="Ego pose, speed, acceleration, yaw rate and steering.",
    producers=("simulator", "vehicle"),
    consumers=("planning", "monitor"),
)
SIM_GROUND_TRUTH = TopicSpec(
    name="sim.ground_truth",
    key="vehicle_id/camera_id",
    value=GroundTruth,
    schema_version=1,
    rate_hz=20.0,
    description="True objects per rendered frame and the ego pose.",
    producers=("simulator",),
    consumers=("evaluation",),
)
PERCEPTION_OBJECTS = TopicSpec(
    name="perception.objects",
    key="vehicle_id/camera_id",
    value=PerceptionObjects,
    schema_version=PERCEPTION_OBJECTS_SCHEMA_VERSION,
    rate_hz=20.0,
    description="Tracked objects per frame with range, velocity, TTC and stage latencies.",
    producers=("perception",),
    consumers=("planning", "monitor"),
)
PERCEPTION_OBJECTS_SHADOW = TopicSpec(
    name="perception.objects.shadow",
    key=PERCEPTION_OBJECTS.key,
    value=PerceptionObjects,
    schema_version=PERCEPTION_OBJECTS_SCHEMA_VERSION,
    # Only while a candidate runs in shadow, and sampled when it falls behind: no steady rate.
    rate_hz=None,
    description="A candidate model's results in shadow, for frames production also served "
                "(same schema as perception.objects; model_version names the candidate). "
                "Planning never reads it.",
    producers=("perception (shadow model)",),
    consumers=("monitor", "recorder", "operators"),
)
PLANNING_TRAJECTORY = TopicSpec(
    name="planning.trajectory",
    key="vehicle_id",
    value=PlanningTrajectory,
    schema_version=1,
    rate_hz=20.0,
    description="The chosen trajectory, its behaviour and cost terms.",
    producers=("planning",),
    consumers=("monitor", "report"),
)
VEHICLE_CONTROL = TopicSpec(
    name="vehicle.control",
    key="vehicle_id",
    value=VehicleControl,
    schema_version=1,
    rate_hz=20.0,
    description="Signed Autoware-like control commands from the command gate.",
    producers=("command gate",),
    consumers=("vehicle stacks", "simulator"),
    headers=CONTROL_SIGNATURE_HEADERS,
)
SAFETY_EVENTS = TopicSpec(
    name="safety.events",
    key="vehicle_id",
    value=SafetyEvent,
    schema_version=1,
    rate_hz=None,
    description="Typed safety and monitoring events from every service.",
    producers=("every service",),
    consumers=("audit", "monitoring consumers", "planning (the simulator's run_finished only)"),
    # signed when the producer holds an events key (`roadstream run` always does); an audit
    # with an events keyring refuses the events without them
    optional_headers=CONTROL_SIGNATURE_HEADERS,
)
MODEL_DEPLOYMENTS = TopicSpec(
    name="model.deployments",
    key="model_name",
    value=ModelDeployment,
    schema_version=MODEL_DEPLOYMENTS_SCHEMA_VERSION,
    rate_hz=None,
    description="Commands to serve a registry version now (promote, rollback), or to run one "
                "beside production in shadow (shadow, shadow_stop); every running perception "
                "service follows them without a restart.",
    producers=("roadstream models promote/rollback/shadow",),
    consumers=("perception",),
)

#: The primary topics, in data-path order (then the control plane).
TOPICS: Final[tuple[TopicSpec, ...]] = (
    CAMERA_FRAMES,
    VEHICLE_STATE,
    SIM_GROUND_TRUTH,
    PERCEPTION_OBJECTS,
    PERCEPTION_OBJECTS_SHADOW,
    PLANNING_TRAJECTORY,
    VEHICLE_CONTROL,
    SAFETY_EVENTS,
    MODEL_DEPLOYMENTS,
)


def dead_letter_spec(source: TopicSpec) -> TopicSpec:
    """The `<topic>.dlq` spec of a source topic: original bytes plus error headers."""
    return TopicSpec(
        name=source.dlq,
        key=f"as {source.name}",
        value=None,
        schema_version=1,
        rate_hz=None,
        description=f"Messages of {source.name} a consumer rejected: original bytes, error headers.",
        producers=("any consumer of " + source.name,),
        consumers=("operators", "monitor"),
        headers=DLQ_HEADERS,
        content_types=source.content_types,
        dead_letter=True,
    )


DEAD_LETTER_TOPICS: Final[tuple[TopicSpec, ...]] = tuple(dead_letter_spec(t) for t in TOPICS)
ALL_TOPICS: Final[tuple[TopicSpec, ...]] = TOPICS + DEAD_LETTER_TOPICS
_BY_NAME: Final = {t.name: t for t in ALL_TOPICS}


def topic(name: str) -> TopicSpec:
    """Look a topic up by name; KeyError names the unknown topic and the known ones."""
    try:
        return _BY_NAME[name]
    except KeyError:
        known = ", ".join(t.name for t in TOPICS)
        raise KeyError(f"unknown topic {name!r}; known topics: {known} (and their .dlq)") from None


def payload_models() -> tuple[type[Payload], ...]:
    """Every JSON payload model, once, in registry order (a topic may share another's)."""
    return tuple(dict.fromkeys(t.value for t in TOPICS if t.value is not None))
