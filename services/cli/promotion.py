"""What `roadstream models promote` and `shadow-report` need beyond the registry.

- ``PromotionSettings``: the promotion floors (``ROADSTREAM_PROMOTION_*``), checked by
  ``perception.promotion.below_floors``;
- ``shadow_reports``: the audited `model_shadow_report` events of a candidate, read from the
  audit trail (the record of what the perception services measured, not a file anyone wrote);
- ``publish_override``: the `model_promotion_override` event (warning) of a promotion made below
  the floors, signed as the services sign theirs when an events key is configured.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from perception.promotion import Floors
from services.audit.settings import load_audit_settings
from services.audit.store import AuditFilter, AuditStoreError, open_store
from services.broker.clients import wait_for_brokers
from services.broker.producers import open_producer
from services.cli.common import CommandError
from services.messages import SAFETY_EVENTS, SafetyEvent, Severity
from services.runtime.event_signing import event_signer
from services.runtime.events import MODEL_PROMOTION_OVERRIDE, MODEL_SHADOW_REPORT, safety_event
from services.settings import Settings, invalid_setting_line

SOURCE = "models"  # the `source` of the events the command raises


class PromotionSettings(BaseSettings):
    """The floors a candidate must reach to be promoted (``none`` turns a floor off)."""

    model_config = SettingsConfigDict(env_prefix="ROADSTREAM_PROMOTION_", extra="forbid",
                                      env_parse_none_str="none")

    min_map50: float | None = Field(
        default=0.5, ge=0, le=1, description="Lowest offline mAP@0.5 (the registered metrics).")
    min_shadow_agreement: float | None = Field(
        default=0.9, ge=0, le=1, description="Lowest agreement with the current production in "
        "shadow (F1 of matched boxes, perception.shadow), as recorded by shadow-report.")
    min_shadow_frames: int = Field(
        default=100, ge=1, description="Fewest frames the recorded shadow comparison must cover.")

    def floors(self) -> Floors:
        """As the pure check takes them."""
        return Floors(min_map50=self.min_map50, min_shadow_agreement=self.min_shadow_agreement,
                      min_shadow_frames=self.min_shadow_frames)


def load_floors() -> Floors:
    """The floors from the environment; a bad value is a one-line ``CommandError``."""
    try:
        return PromotionSettings().floors()
    except ValidationError as exc:
        raise CommandError(invalid_setting_line(exc, "ROADSTREAM_PROMOTION_")) from None


def shadow_reports(url: str | None, version: str, sha256: str) -> list[dict[str, Any]]:
    """Details of every audited `model_shadow_report` of ``version`` (by its sha256), oldest
    first. ``url``: the audit database (default ROADSTREAM_AUDIT_URL); read only."""
    options = load_audit_settings(url=url)
    try:
        store = open_store(options.url, create=False, busy_timeout_s=options.busy_timeout_s)
    except (AuditStoreError, FileNotFoundError) as exc:
        raise CommandError(f"audit trail {options.url}: {exc}") from None
    try:
        rows = store.query(AuditFilter(type=MODEL_SHADOW_REPORT, source="perception"))
    except AuditStoreError as exc:
        raise CommandError(str(exc)) from None
    finally:
        store.close()
    found = []
    for row in rows:
        details = row.event().get("details") or {}
        shadow = details.get("shadow") if isinstance(details, Mapping) else None
        if isinstance(shadow, Mapping) and (shadow.get("version"), shadow.get("sha256")) == (
                version, sha256):
            found.append(dict(details))
    return found


def override_event(entry: Mapping[str, Any], production: Mapping[str, Any] | None,
                   reason: str, failures: list[str]) -> SafetyEvent:
    """The `model_promotion_override` event of promoting ``entry`` below ``failures``."""
    return safety_event(
        source=SOURCE, type_=MODEL_PROMOTION_OVERRIDE, severity=Severity.WARNING,
        details={"version": entry["version"], "sha256": entry["sha256"], "reason": reason,
                 "below_floors": failures,
                 "replaces": None if production is None else {
                     "version": production["version"], "sha256": production["sha256"]}})


async def publish_override(settings: Settings, event: SafetyEvent) -> None:
    """Send ``event`` on `safety.events` (signed when an events key is set); wait for the ack."""
    bootstrap = settings.bootstrap_servers
    await wait_for_brokers(settings, bootstrap)
    producer = await open_producer(settings, bootstrap, SOURCE)
    body = event.encode()
    headers = [("content-type", b"application/json")]
    signer = event_signer(settings)
    if signer is not None:
        signed = signer.sign_value(event.source, body)
        headers += [(k, v.encode()) for k, v in signed.headers.items()]
    try:
        await asyncio.wait_for(producer.send_and_wait(
            SAFETY_EVENTS.name, body, key=event.vehicle_id.encode() or None, headers=headers),
            timeout=settings.connect_timeout_s)
    finally:
        await producer.stop()
