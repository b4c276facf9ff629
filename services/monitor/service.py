"""`roadstream serve monitor`: the safety monitor on Kafka.

One subscriber per registry topic, each in its own consumer group
(`<group prefix>.monitor.<topic>`), so that a slow or rebalancing topic never holds up another;
they are added once the broker runs and join their groups concurrently. A check loop ticks
every `tick_s` to notice silence, and a probe loop reads consumer lag.
Findings are published as `safety.events` (source `monitor`). A finding raised while handling
a record is published before the record's offset is committed; one raised by a loop is kept
and retried when Kafka cannot be reached.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from aiokafka import ConsumerRebalanceListener, TopicPartition

from services.messages import ALL_TOPICS, SafetyEvent, TopicSpec
from services.monitor.drift import DriftReference, load_reference
from services.monitor.findings import Finding
from services.monitor.lag import LagProbe
from services.monitor.metrics import MonitorMetrics
from services.monitor.monitor import Monitor
from services.monitor.settings import MonitorSettings, load_monitor_settings
from services.runtime.delivery import Record, is_infrastructure_error
from services.runtime.events import safety_event
from services.runtime.service import ServiceRuntime
from services.settings import Settings, SettingsError

log = logging.getLogger(__name__)

SOURCE = "monitor"
MAX_PENDING = 10_000  # events kept while Kafka is unreachable; the oldest are dropped beyond


def build(settings: Settings, bootstrap: str, *,
          options: MonitorSettings | None = None) -> ServiceRuntime:
    """The monitor service, configured by `options` (default ROADSTREAM_MONITOR_*, see
    docs/monitor.md)."""
    frame, _ = build_monitor(settings, bootstrap, options)
    return frame


def build_monitor(settings: Settings, bootstrap: str, options: MonitorSettings | None = None,
                  ) -> tuple[ServiceRuntime, Monitor]:
    """The service frame and the Monitor it drives (tests read the latter)."""
    options = options or load_monitor_settings()
    reference: DriftReference | None = None
    if options.drift_reference is not None:
        try:
            reference = load_reference(options.drift_reference)
        except ValueError as exc:
            raise SettingsError(f"invalid setting ROADSTREAM_MONITOR_DRIFT_REFERENCE: {exc}") from None
    frame = ServiceRuntime(SOURCE, settings, bootstrap, watcher=True)
    metrics = MonitorMetrics(frame.registry)
    monitor = Monitor(options, reference=reference, metrics=metrics)
    publisher = _Publisher(frame, metrics)

    def subscribe(spec: TopicSpec) -> None:
        async def on_record(record: Record) -> None:
            await publisher.publish(monitor.observe(record, time.time_ns()))

        frame.consume(spec, group_id=f"{frame.group_id}.{spec.name}",
                      auto_offset_reset=options.start_from,
                      listener=_Release(monitor, spec.name))(on_record)

    async def subscribe_loop(stop: asyncio.Event) -> None:
        # Subscribed once the broker runs, and started together: the frame starts subscribers
        # one after the other and each waits for its group join (seconds), which for 14 groups
        # would hold the monitor's start-up for over a minute.
        before = {id(s) for s in frame.broker.subscribers}
        for spec in ALL_TOPICS:
            subscribe(spec)
        new = [s for s in frame.broker.subscribers if id(s) not in before]
        try:
            await asyncio.gather(*(s.start() for s in new))
        except Exception:
            log.exception("monitor: subscribing failed; stopping")
            raise
        log.info("monitor: watching %d topics", len(new))
        await stop.wait()

    async def check_loop(stop: asyncio.Event) -> None:
        while not stop.is_set():
            publisher.queue(monitor.tick(time.time_ns()))
            await publisher.flush()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=options.tick_s)

    async def lag_loop(stop: asyncio.Event) -> None:
        if options.lag_interval_s <= 0:
            await stop.wait()
            return
        probe = LagProbe(settings, bootstrap, (t.name for t in ALL_TOPICS))
        try:
            while not stop.is_set():
                try:
                    lags = await probe.fetch()
                except Exception as exc:  # the broker may lack the admin APIs: degrade, go on
                    log.info("monitor: consumer lag unavailable: %s: %s", type(exc).__name__, exc)
                    metrics.lag_up.set(0)
                    publisher.queue(monitor.lag.unavailable(exc))
                else:
                    metrics.lag_up.set(1)
                    metrics.set_lag(lags)
                    publisher.queue(monitor.lag.update(lags))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=options.lag_interval_s)
        finally:
            await probe.close()

    frame.background(subscribe_loop)
    frame.background(check_loop)
    frame.background(lag_loop)
    return frame, monitor


class _Release(ConsumerRebalanceListener):
    """Tells the monitor which partitions of its topic this replica no longer watches.

    The rebalance protocol revokes every partition before each assignment, so only those
    revoked and not assigned back are released.
    """

    def __init__(self, monitor: Monitor, topic: str) -> None:
        self._monitor = monitor
        self._topic = topic
        self._revoked: set[int] = set()

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        """Remember what was taken away until the new assignment is known."""
        self._revoked = {tp.partition for tp in revoked if tp.topic == self._topic}

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        """Forget the keys of partitions now watched by another replica."""
        lost = self._revoked - {tp.partition for tp in assigned if tp.topic == self._topic}
        self._revoked = set()
        if lost:
            log.info("monitor: %s partitions %s moved to another replica", self._topic, sorted(lost))
            self._monitor.release(self._topic, lost)


class _Publisher:
    """Turns findings into safety events; loop findings wait here while Kafka is unreachable."""

    def __init__(self, frame: ServiceRuntime, metrics: MonitorMetrics) -> None:
        self._frame = frame
        self._metrics = metrics
        self._pending: list[SafetyEvent] = []

    def event(self, finding: Finding) -> SafetyEvent:
        """The SafetyEvent of a finding, stamped now."""
        return safety_event(source=SOURCE, type_=finding.type, severity=finding.severity,
                            vehicle_id=finding.vehicle_id, details=finding.details,
                            refs=finding.refs, run_id=finding.run_id or self._frame.run_id)

    async def publish(self, findings: list[Finding]) -> None:
        """Publish now; on a Kafka failure the rest wait for `flush` and the error propagates.

        The record is then not committed; its redelivery is recognised as seen (the checks'
        state has moved on), so its events are the ones kept here.
        """
        for i, finding in enumerate(findings):
            try:
                await self._emit(self.event(finding))
            except Exception as exc:
                if is_infrastructure_error(exc):
                    self.queue(findings[i:])
                raise

    def queue(self, findings: list[Finding]) -> None:
        """Keep findings for the next `flush` (bounded)."""
        self._pending.extend(self.event(f) for f in findings)
        del self._pending[:-MAX_PENDING]

    async def flush(self) -> None:
        """Publish queued events in order; stop at the first Kafka failure and keep the rest."""
        while self._pending:
            try:
                await self._emit(self._pending[0])
            except Exception as exc:
                if not is_infrastructure_error(exc):
                    raise
                log.warning("monitor: %d events wait for Kafka: %s", len(self._pending), exc)
                return
            self._pending.pop(0)

    async def _emit(self, event: SafetyEvent) -> None:
        await self._frame.emit(event)
        self._metrics.events.labels(event.type, event.severity.value).inc()
        log.info("monitor: %s %s %s %s", event.severity.value, event.type, event.vehicle_id,
                 event.details)
