"""Promotion floors: the figures a candidate must reach before it may become production.

Two floors, each ``None`` when not enforced:

- ``min_map50``: the candidate's offline mAP@0.5 as registered (a package manifest's
  ``evaluation.map50``, or a checkpoint's ``val.map50``);
- ``min_shadow_agreement``: its agreement with the current production in shadow
  (``perception.shadow``), as recorded into its registry entry (``shadow``) from the audited
  `model_shadow_report` events, over at least ``min_shadow_frames`` frames, and against the
  production that serves now (a report against an earlier production says nothing of this
  one). It applies only when there is a production to replace: the first production has
  nothing to be compared with.

A missing figure is a failure, never a pass. ``below_floors`` returns one clause per floor
missed, naming the floor and the value, for the command to print and to record with an
override.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Floors:
    """The floors a promotion is checked against (None: that floor is not enforced)."""

    min_map50: float | None = 0.5
    min_shadow_agreement: float | None = 0.9
    min_shadow_frames: int = 100


def offline_map50(entry: Mapping[str, Any]) -> float | None:
    """An entry's offline mAP@0.5, or None when it was registered without one."""
    metrics = entry.get("metrics") or {}
    val = metrics.get("val") if isinstance(metrics.get("val"), Mapping) else metrics
    value = val.get("map50") if isinstance(val, Mapping) else None
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def below_floors(entry: Mapping[str, Any], floors: Floors,
                 production: Mapping[str, Any] | None) -> list[str]:
    """The floors ``entry`` misses, one clause each (empty: it may be promoted).

    ``production``: the entry serving now (None when nothing is production). Promoting the
    production again is never refused.
    """
    if production is not None and production["version"] == entry["version"]:
        return []
    failures: list[str] = []
    if floors.min_map50 is not None:
        map50 = offline_map50(entry)
        if map50 is None:
            failures.append(f"offline mAP@0.5 floor {floors.min_map50}: {entry['version']} has "
                            "no offline mAP@0.5 in its metrics")
        elif map50 < floors.min_map50:
            failures.append(f"offline mAP@0.5 floor {floors.min_map50}: {entry['version']} has "
                            f"{map50:.4f}")
    if floors.min_shadow_agreement is not None and production is not None:
        failures += _shadow_failures(entry, floors, production)
    return failures


def _shadow_failures(entry: Mapping[str, Any], floors: Floors,
                     production: Mapping[str, Any]) -> list[str]:
    minimum = floors.min_shadow_agreement
    if minimum is None:
        return []
    floor = f"shadow agreement floor {minimum}"
    shadow = entry.get("shadow")
    if not isinstance(shadow, Mapping):
        return [f"{floor}: {entry['version']} has no shadow report (run it in shadow with "
                f"`roadstream models shadow {entry['version']}`, then record the reports with "
                f"`roadstream models shadow-report {entry['version']}`)"]
    against = shadow.get("production") or {}
    if against.get("sha256") != production.get("sha256"):
        return [f"{floor}: {entry['version']}'s shadow report compares it with "
                f"{against.get('version')}, not with the production {production['version']}"]
    frames = int(shadow.get("frames") or 0)
    if frames < floors.min_shadow_frames:
        return [f"{floor}: {entry['version']}'s shadow report covers {frames} frames, fewer than "
                f"the {floors.min_shadow_frames} required"]
    agreement = shadow.get("agreement")
    if agreement is None:
        return [f"{floor}: {entry['version']}'s shadow report has no agreement (neither model "
                "gave a box)"]
    if float(agreement) < minimum:
        return [f"{floor}: {entry['version']} agrees {float(agreement):.4f} with "
                f"{production['version']}"]
    return []
