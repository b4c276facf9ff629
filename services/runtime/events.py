"""Building safety events: one helper so every service fills them the same way."""

from __future__ import annotations

import time
import uuid
from typing import Any, Final

from services.messages import EventRefs, SafetyEvent, Severity

#: Info event of a producer whose run ended normally (the simulator, at a scenario's end): the
#: silence that follows is not an outage. The monitor stops judging the run when it sees it.
RUN_FINISHED: Final = "run_finished"
#: Perception switched to a deployed model (info) / refused one and kept serving its own
#: (warning): services/perception/deploy.py, docs/models.md.
MODEL_SWAPPED: Final = "model_swapped"
MODEL_SWAP_FAILED: Final = "model_swap_failed"
#: Perception started (info) / stopped (info) running a candidate in shadow beside production,
#: or refused one (warning, the shadow it had goes on); and its periodic comparison of the two
#: (info): services/perception/shadow.py, docs/models.md.
MODEL_SHADOW_STARTED: Final = "model_shadow_started"
MODEL_SHADOW_STOPPED: Final = "model_shadow_stopped"
MODEL_SHADOW_FAILED: Final = "model_shadow_failed"
MODEL_SHADOW_REPORT: Final = "model_shadow_report"
#: A promotion below the configured floors, made anyway with `--override REASON` (warning):
#: services/cli/models.py, docs/models.md.
MODEL_PROMOTION_OVERRIDE: Final = "model_promotion_override"


def safety_event(*, source: str, type_: str, severity: Severity, vehicle_id: str = "",
                 details: dict[str, Any] | None = None, refs: EventRefs | None = None,
                 run_id: str = "", stamp_ns: int | None = None) -> SafetyEvent:
    """A new SafetyEvent with a fresh uuid and the current wall-clock stamp."""
    return SafetyEvent(event_id=uuid.uuid4(), stamp_ns=stamp_ns or time.time_ns(),
                       vehicle_id=vehicle_id, source=source, type=type_, severity=severity,
                       details=details or {}, references=refs or EventRefs(), run_id=run_id)
