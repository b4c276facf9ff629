"""Hot swap: the perception service follows `model.deployments` without a restart.

On a `ModelDeployment` the new model is prepared beside the one serving, on a thread of its own
so that frames keep flowing: its artifact's sha256 is checked, it is loaded and warmed up on a
dummy frame (``perception.hotswap.load_verified``). Then the service's ``model`` is replaced
on the event loop, between two batches: a batch already running finishes on the old model, and
every result names the model that made it. A deployment that fails at any step leaves the old
model serving and raises `model_swap_failed` (warning); a swap raises `model_swapped` (info).
A deployment of the version and sha256 already serving changes nothing (deliveries are at least
once).

Action ``shadow`` prepares the version the same way (sha256, load, version, warm-up, on the same
thread) and runs it beside production (shadow.py): `model_shadow_started` (info), or
`model_shadow_failed` (warning) and the shadow it had goes on. ``shadow_stop`` of the version in
shadow, or a promotion of it, ends the shadow with a last report and `model_shadow_stopped`.

Every replica must see every deployment, so each service instance reads `model.deployments` in
a consumer group of its own, from the newest offset at its start. What was deployed before that
comes from the model registry: with ``from_registry`` (ROADSTREAM_PERCEPTION_FROM_REGISTRY) a
service started or restarted after a promotion serves the registry's production version from
its first frame (checked as a swap is; on a failure it serves its configured weights and raises
`model_swap_failed` once it runs). Once its deployment consumer holds its partition it reads
the registry again and applies a production that changed meanwhile, as a deployment: `promote`
writes the registry before it publishes, so a promotion is either in that second reading or
on the topic after the consumer's start, never in neither. Without ``from_registry`` a service
serves its configured weights (ROADSTREAM_PERCEPTION_WEIGHTS) until the next deployment. A
shadow is not resumed after a restart: it is an experiment, not a state of the registry.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from perception.detector import Detector
from perception.hotswap import LoadTimes, ServedModel, SwapError, load_verified
from perception.registry import ModelRegistry, RegistryError
from perception.tracking import TrackerConfig
from services.messages import (
    DeploymentAction,
    EventRefs,
    ModelDeployment,
    Severity,
)
from services.runtime.delivery import Record
from services.runtime.events import (
    MODEL_SHADOW_FAILED,
    MODEL_SHADOW_STARTED,
    MODEL_SHADOW_STOPPED,
    MODEL_SWAP_FAILED,
    MODEL_SWAPPED,
    safety_event,
)

if TYPE_CHECKING:
    from services.perception.service import PerceptionService

log = logging.getLogger(__name__)
MS = 1e-6  # ns → ms
#: Where a swap's command came from (the ``origin`` of its events).
ORIGIN_TOPIC: Final = "model.deployments"
ORIGIN_REGISTRY: Final = "registry at start"

#: Loads a detector from a checkpoint file or package folder (the service's settings applied).
Loader = Callable[[Path], Detector]


def _names(model: ServedModel) -> dict[str, str | None]:
    return {"version": model.version, "sha256": model.sha256}


class Deployments:
    """Applies `model.deployments` commands to one perception service (see the module)."""

    def __init__(self, service: PerceptionService, load: Loader) -> None:
        self.service = service
        self.load = load
        # Its own thread: loading and warming up never wait behind, nor hold up, the batches.
        self.worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="perception-swap")
        self.swaps: list[dict[str, object]] = []
        self.failures = 0

    async def handle(self, record: Record) -> None:
        """Apply one deployment command (a malformed one raises: the runtime dead-letters it)."""
        received_ns = time.time_ns()
        command = ModelDeployment.decode(record.value, source=f"{record.topic}@{record.offset}")
        if command.action in (DeploymentAction.SHADOW, DeploymentAction.SHADOW_STOP):
            await self.shadow(command, record, received_ns)
            return
        await self.swap(command, EventRefs(topic=record.topic, partition=record.partition,
                                           offset=record.offset), received_ns, ORIGIN_TOPIC)

    async def swap(self, command: ModelDeployment, refs: EventRefs, received_ns: int,
                   origin: str) -> None:
        """Serve ``command``'s model from the next batch on, or keep the old one and say why.
        ``origin``: where the command came from (`ORIGIN_TOPIC`, `ORIGIN_REGISTRY`)."""
        old = self.service.model
        if (command.version, command.sha256) == (old.version, old.sha256):
            log.info("perception: %s (%s…) already serving", command.version, command.sha256[:12])
            return
        details: dict[str, object] = {
            "version": command.version, "sha256": command.sha256, "path": command.path,
            "action": command.action.value, "previous": _names(old), "origin": origin}
        try:
            new, times = await self._load_verified(command)
        except SwapError as error:
            await self.refused(command, error, details, refs)
            return
        self.service.model = new  # between two batches: a running batch keeps the one it took
        self.service.tracker_config = TrackerConfig.at_operating_score(new.detector.operating_score)
        switched_ns = time.time_ns()
        swap = {**details, "hash_ms": round(times.hash_ms, 1), "load_ms": round(times.load_ms, 1),
                "warmup_ms": round(times.warmup_ms, 1),
                "received_to_switch_ms": round((switched_ns - received_ns) * MS, 1),
                "issued_to_switch_ms": round((switched_ns - command.stamp_ns) * MS, 1),
                "command_stamp_ns": command.stamp_ns}
        self.swaps.append(swap)
        log.info("perception: now serving %s (was %s)", new.version, old.version)
        await self.service.frame.emit(safety_event(
            source="perception", type_=MODEL_SWAPPED, severity=Severity.INFO, details=swap,
            refs=refs))
        shadow = self.service.shadow.model
        if shadow is not None and (shadow.version, shadow.sha256) == (new.version, new.sha256):
            await self._stop_shadow(refs, "promoted to production")  # nothing left to compare

    async def refused(self, command: ModelDeployment, error: SwapError,
                      details: dict[str, object], refs: EventRefs) -> None:
        """Count and raise `model_swap_failed`: ``command`` did not pass ``error.step``."""
        self.failures += 1
        serving = self.service.model
        log.warning("perception: deployment of %s refused, %s keeps serving: %s",
                    command.version, serving.version, error)
        await self.service.frame.emit(safety_event(
            source="perception", type_=MODEL_SWAP_FAILED, severity=Severity.WARNING,
            details={**details, "step": error.step, "error": str(error),
                     "serving": _names(serving)}, refs=refs))

    async def follow_registry(self, registry_dir: Path, at_build: StartChoice,
                              assigned: Callable[[], Awaitable[bool]],
                              stop: asyncio.Event) -> None:
        """The start-up half of ``from_registry`` (see the module), as a background loop.

        Raises `model_swap_failed` for what went wrong at build (``at_build``), then, once
        ``assigned()`` says the deployment consumer holds its partition, reads the registry
        again and swaps to its production if that is not what serves. Then waits for ``stop``.
        A failure here (the broker down as the event goes out) is logged: the service runs on
        with the model it has, since a background loop that ends stops its service.
        """
        try:
            await self._check_registry(registry_dir, at_build, assigned)
        except Exception as exc:  # any: the service must not stop for it
            log.warning("perception: the registry check at start failed (%s: %s); %s keeps "
                        "serving", type(exc).__name__, exc, self.service.model.version)
        await stop.wait()

    async def _check_registry(self, registry_dir: Path, at_build: StartChoice,
                              assigned: Callable[[], Awaitable[bool]]) -> None:
        refs = EventRefs()
        if at_build.failure is not None and at_build.command is not None:
            await self.refused(at_build.command, at_build.failure, {
                "version": at_build.command.version, "sha256": at_build.command.sha256,
                "path": at_build.command.path, "action": at_build.command.action.value,
                "previous": None, "origin": ORIGIN_REGISTRY}, refs)
        if await assigned():
            received_ns = time.time_ns()
            try:
                command = production_deployment(registry_dir)
            except RegistryError as exc:
                command = None
                await self.unreadable(registry_dir, exc, refs)
            failed_before = at_build.failure is not None and at_build.command is not None and (
                command is not None and (command.version, command.sha256) == (
                    at_build.command.version, at_build.command.sha256))
            if command is not None and not failed_before:  # that one was said already
                await self.swap(command, refs, received_ns, ORIGIN_REGISTRY)
        elif at_build.unreadable is not None:
            await self.unreadable(registry_dir, at_build.unreadable, refs)

    async def unreadable(self, registry_dir: Path, error: RegistryError,
                         refs: EventRefs) -> None:
        """`model_swap_failed` for a registry that cannot be read; the model serving stays."""
        self.failures += 1
        serving = self.service.model
        log.warning("perception: registry %s unreadable, %s keeps serving: %s", registry_dir,
                    serving.version, error)
        await self.service.frame.emit(safety_event(
            source="perception", type_=MODEL_SWAP_FAILED, severity=Severity.WARNING,
            details={"origin": ORIGIN_REGISTRY, "step": "registry", "registry": str(registry_dir),
                     "error": str(error), "serving": _names(serving)}, refs=refs))

    async def shadow(self, command: ModelDeployment, record: Record, received_ns: int) -> None:
        """Start (action ``shadow``) or stop (``shadow_stop``) the candidate in shadow."""
        refs = EventRefs(topic=record.topic, partition=record.partition, offset=record.offset)
        current = self.service.shadow.model
        named = current is not None and (current.version, current.sha256) == (
            command.version, command.sha256)
        if command.action == DeploymentAction.SHADOW_STOP:
            if named:
                await self._stop_shadow(refs, "shadow_stop deployment")
            else:
                log.info("perception: shadow_stop of %s ignored, shadowing %s", command.version,
                         _names(current) if current else "nothing")
            return
        if named:
            log.info("perception: %s already in shadow", command.version)
            return
        details: dict[str, object] = {
            "version": command.version, "sha256": command.sha256, "path": command.path,
            "production": _names(self.service.model),
            "previous_shadow": _names(current) if current else None}
        try:
            new, times = await self._load_verified(command)
        except SwapError as error:
            self.failures += 1
            log.warning("perception: shadow of %s refused: %s", command.version, error)
            await self.service.frame.emit(safety_event(
                source="perception", type_=MODEL_SHADOW_FAILED, severity=Severity.WARNING,
                details={**details, "step": error.step, "error": str(error)}, refs=refs))
            return
        await self.service.shadow.start(new)
        log.info("perception: %s now in shadow beside %s", new.version, self.service.model.version)
        await self.service.frame.emit(safety_event(
            source="perception", type_=MODEL_SHADOW_STARTED, severity=Severity.INFO,
            details={**details, "hash_ms": round(times.hash_ms, 1),
                     "load_ms": round(times.load_ms, 1), "warmup_ms": round(times.warmup_ms, 1),
                     "received_to_start_ms": round((time.time_ns() - received_ns) * MS, 1)},
            refs=refs))

    async def _load_verified(self, command: ModelDeployment) -> tuple[ServedModel, LoadTimes]:
        """The command's model, checked and warmed up on the model thread (frames keep flowing)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.worker, lambda: load_verified(
            command.path, version=command.version, sha256=command.sha256, load=self.load))

    async def _stop_shadow(self, refs: EventRefs, reason: str) -> None:
        stopped = self.service.shadow.model
        last = await self.service.shadow.stop()
        await self.service.frame.emit(safety_event(
            source="perception", type_=MODEL_SHADOW_STOPPED, severity=Severity.INFO,
            details={"version": stopped.version if stopped else None,
                     "sha256": stopped.sha256 if stopped else None, "reason": reason,
                     "last_report_frames": last["frames"] if last else 0}, refs=refs))


def deployment_of(entry: Mapping[str, Any], action: DeploymentAction) -> ModelDeployment:
    """The `model.deployments` command that serves a registry entry."""
    return ModelDeployment(version=entry["version"], path=entry["path"], sha256=entry["sha256"],
                           stage=entry["stage"], action=action, stamp_ns=time.time_ns())


def production_deployment(registry_dir: Path) -> ModelDeployment | None:
    """The deployment of the registry's production version; None when none was promoted.
    Raises ``RegistryError`` for a registry that cannot be read."""
    entry = ModelRegistry(registry_dir).production()
    return None if entry is None else deployment_of(entry, DeploymentAction.PROMOTE)


@dataclass(frozen=True)
class StartChoice:
    """What ``from_registry`` found at build: the registry's production as a deployment
    (None: none, or unreadable), and why it does not serve (None: it serves, or there is none)."""

    command: ModelDeployment | None = None
    failure: SwapError | None = None
    unreadable: RegistryError | None = None


def model_at_start(registry_dir: Path, load: Loader) -> tuple[ServedModel | None, StartChoice]:
    """The registry's production, checked and warmed up as a swap is, for a service to serve
    from its first frame; ``(None, why)`` when there is none or it fails its check."""
    try:
        command = production_deployment(registry_dir)
    except RegistryError as exc:
        log.warning("perception: registry %s unreadable at start: %s", registry_dir, exc)
        return None, StartChoice(unreadable=exc)
    if command is None:
        return None, StartChoice()
    try:
        model, _ = load_verified(command.path, version=command.version, sha256=command.sha256,
                                 load=load)
    except SwapError as error:
        return None, StartChoice(command=command, failure=error)
    log.info("perception: serving the registry's production %s from the start", command.version)
    return model, StartChoice(command=command)

