"""The audit service: `safety.events` → the hash-chained audit trail (SQLite or PostgreSQL).

One topic carries everything the audit keeps. Every service raises its events on
`safety.events`, and vehicle clients that reject a control command (bad signature, stale,
replayed counter) report the rejection there too, as a SafetyEvent with source
"vehicle-client"; so command rejections need no topic of their own.

Delivery: the handler writes the event and the database transaction commits before the
handler returns; only then does the service frame commit the Kafka offset. A crash between
the two redelivers the event, and the store's idempotency by event id turns the redelivery
into a no-op. A database that cannot be reached is not the event's fault: the record is
not committed (nor dead-lettered) and comes back after `retry_backoff_s`. An event that
is not a valid SafetyEvent goes to `safety.events.dlq` like any bad input.

Signed events: with an events keyring (`ROADSTREAM_EVENTS_KEYS`), only events signed with a
key of it, whose (epoch, counter) its source has not used before, enter the trail
(services/runtime/event_signing.py). Unsigned, forged and replayed events are refused: not
stored, counted in `roadstream_audit_events_rejected_total{reason}` and the stop counts, and
logged once per window (services/audit/rejections.py). Their offsets are committed: a forgery
is not worth a retry. Without a keyring every valid event is stored, as before signing.

Tamper evidence: rows are MAC'd with the audit key, and the head is anchored to the anchor
file every `anchor_every_rows` rows, every `anchor_every_s` seconds while it moves, and at
stop (services/audit/chain.py, anchor.py, trail.py; docs/audit.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

from prometheus_client import Counter

from services.audit.rejections import Rejections
from services.audit.settings import AuditSettings, load_audit_settings
from services.audit.store import AuditStore, AuditStoreError, Outcome, UnkeyedTrailError
from services.audit.trail import open_trail
from services.control.signing import CommandRejected
from services.messages import SAFETY_EVENTS, EventRefs, SafetyEvent, Severity
from services.runtime.delivery import Record
from services.runtime.event_signing import EventVerifier
from services.runtime.events import safety_event
from services.runtime.service import BuiltService, ServiceRuntime
from services.settings import Settings, SettingsError

log = logging.getLogger(__name__)


class AuditStoreUnavailableError(ConnectionError):
    """The audit database cannot take writes right now.

    A ConnectionError on purpose: the service frame treats it like a Kafka outage, so the
    record is neither committed nor dead-lettered but delivered again.
    """


class AuditStartupError(SettingsError):
    """The audit database cannot be opened at start-up: a one-line error for the operator."""


class AuditService(ServiceRuntime):
    """The service frame plus the store it writes to (closed after the consumer stopped)."""

    def __init__(self, settings: Settings, bootstrap: str, store: AuditStore,
                 options: AuditSettings, **frame_kwargs: Any) -> None:
        super().__init__("audit", settings, bootstrap, watcher=True, **frame_kwargs)
        self.store = store
        self.options = options
        self.rows = Counter("roadstream_audit_events_total",
                            "Safety events offered to the audit trail, by outcome",
                            ["outcome"], registry=self.registry)
        self.store_failures = Counter("roadstream_audit_store_failures_total",
                                      "Writes that failed on an unavailable database",
                                      registry=self.registry)
        self.rejected = Counter("roadstream_audit_events_rejected_total",
                                "Safety events refused (not stored): unsigned, forged or "
                                "replayed, by reason", ["reason"], registry=self.registry)
        self.verifier = EventVerifier.of(settings)
        self.rejections = Rejections()
        self.outcomes: dict[str, int] = {}
        if self.verifier is None:
            log.warning("audit: no events keyring (ROADSTREAM_EVENTS_KEYS): event signatures "
                        "are not checked, every valid event is stored")

    async def record(self, record: Record) -> Outcome | None:
        """Validate one `safety.events` record, verify its signature, and append it; return
        what the store did, or None when the event was refused (unsigned, forged, replayed).

        Raises MessageError/ValueError for a bad event (dead-lettered by the frame) and
        AuditStoreUnavailableError when the database cannot take it now (redelivered).
        """
        where = f"{record.topic}[{record.partition}]@{record.offset}"
        event = SafetyEvent.decode(record.value, source=where)
        if self.verifier is not None:
            try:
                self.verifier.check(record.headers, record.value, source=event.source,
                                    event_id=str(event.event_id))
            except CommandRejected as exc:
                self.rejected.labels(exc.reason.value).inc()
                self.rejections.add(exc.reason.value, f"{where} (source {event.source!r}, "
                                    f"type {event.type!r}): {exc}")
                return None
        document = json.loads(record.value)  # valid JSON: decode accepted it
        try:
            outcome = await asyncio.to_thread(self.store.append, event, document)
        except AuditStoreError as exc:
            if not exc.transient:
                raise  # refused whatever the moment: dead-letter it, do not loop on it
            self.store_failures.inc()
            log.error("audit: %s not stored, will be delivered again: %s", where, exc)
            await asyncio.sleep(self.options.retry_backoff_s)
            raise AuditStoreUnavailableError(str(exc)) from exc
        self.rows.labels(outcome.value).inc()
        self.outcomes[outcome.value] = self.outcomes.get(outcome.value, 0) + 1
        if outcome is Outcome.CONFLICT:
            await self._report_conflict(event, record)
        return outcome

    async def _report_conflict(self, event: SafetyEvent, record: Record) -> None:
        log.warning("audit: event %s arrived again with different content; the first one is "
                    "kept", event.event_id)
        await self.emit(safety_event(
            source=self.name, type_="audit_conflict", severity=Severity.WARNING,
            vehicle_id=event.vehicle_id,
            details={"event_id": str(event.event_id),
                     "reason": "same event id, different content; the first one is kept"},
            refs=EventRefs(topic=record.topic, partition=record.partition,
                           offset=record.offset), run_id=self.run_id))

    async def anchor_loop(self, stop: asyncio.Event) -> None:
        """Anchor the head every `anchor_every_s` while it moves, until the service stops.

        A database or file failure is logged and tried again next time: anchoring never stops
        the service (the closing anchor comes from `stop`).
        """
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self.options.anchor_every_s)
            if stop.is_set():
                return
            self.rejections.flush()  # the refusals counted since the last line, if any
            try:
                await asyncio.to_thread(self.store.anchor)
            except AuditStoreError as exc:
                log.error("audit: periodic anchor skipped: %s", exc)

    def counts(self) -> dict[str, Any]:
        """Events stored by outcome, and refused by reason (the service's stop counts)."""
        return {"events": dict(self.outcomes), "rejected": dict(self.rejections.totals)}

    async def stop(self) -> None:
        """Stop consuming (in-flight writes finish), then anchor the head and close the database."""
        try:
            await super().stop()
        finally:
            self.rejections.flush(everything=True)
            await asyncio.to_thread(self.store.close)

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Serve until SIGINT/SIGTERM (or `stop`); once the consumer has drained, anchor the
        head and close the database (the store outlives every handler that may write)."""
        try:
            await super().run(stop)
        finally:
            self.rejections.flush(everything=True)
            await asyncio.to_thread(self.store.close)


def build(settings: Settings, bootstrap: str, *, options: AuditSettings | None = None,
          **frame_kwargs: Any) -> BuiltService[AuditService]:
    """The audit service on a frame, its store opened (schema created when missing); its
    counts are the events stored and refused.

    `options` defaults to `ROADSTREAM_AUDIT_*`; the events keyring comes from `settings`.
    Raises SettingsError for a bad URL, a missing or wrong key or no anchor file, and
    AuditStartupError (a SettingsError) when the database cannot be opened or holds an
    unkeyed (schema v1) trail.
    """
    options = options or load_audit_settings()
    try:
        store = open_trail(options, create=True)
    except UnkeyedTrailError as exc:
        raise AuditStartupError(f"{exc}; point ROADSTREAM_AUDIT_URL at a new database") from exc
    except AuditStoreError as exc:
        raise AuditStartupError(f"{exc} (check ROADSTREAM_AUDIT_URL and that the database "
                                "is up)") from exc
    assert store.anchors is not None  # open_trail always names one
    log.info("audit: writing to %s, anchoring to %s", store.url, store.anchors.path)
    service = AuditService(settings, bootstrap, store, options, **frame_kwargs)
    service.background(service.anchor_loop)

    @service.consume(SAFETY_EVENTS)
    async def on_event(record: Record) -> None:
        await service.record(record)

    return BuiltService(service, service, counts=service.counts)
