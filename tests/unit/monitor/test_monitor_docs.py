"""docs/monitor.md names every setting and every event type the monitor has."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.monitor import findings
from services.monitor.settings import ENV_PREFIX, MonitorSettings

DOC = (Path(__file__).resolve().parents[3] / "docs" / "monitor.md").read_text(encoding="utf-8")
EVENT_TYPES = sorted(v for k, v in vars(findings).items()
                     if k.isupper() and isinstance(v, str) and k != "NS_PER_S")


@pytest.mark.parametrize("name", sorted(MonitorSettings.model_fields))
def test_every_setting_is_documented(name: str) -> None:
    assert f"`{ENV_PREFIX}{name.upper()}`" in DOC


@pytest.mark.parametrize("event_type", EVENT_TYPES)
def test_every_event_type_is_documented(event_type: str) -> None:
    assert f"| `{event_type}` |" in DOC
