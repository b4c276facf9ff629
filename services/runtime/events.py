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


def safety_event(*, source: str, type_: str, severity: Severity, vehicle_id: str = "",
                 details: dict[str, Any] | None = None, refs: EventRefs | None = None,
                 run_id: str = "", stamp_ns: int | None = None) -> SafetyEvent:
    """A new SafetyEvent with a fresh uuid and the current wall-clock stamp."""
    return SafetyEvent(event_id=uuid.uuid4(), stamp_ns=stamp_ns or time.time_ns(),
                       vehicle_id=vehicle_id, source=source, type=type_, severity=severity,
                       details=details or {}, references=refs or EventRefs(), run_id=run_id)
