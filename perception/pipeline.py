"""Per-camera perception after the detector: track, range, filter motion, compute TTC.

``CameraPerception.update`` is the one pure call a service makes per frame after detection:
it takes the frame's ``Detections`` and capture stamp and returns the tracked objects with
their place and motion in the ego frame. Keep one instance per camera stream.
"""

from __future__ import annotations

from dataclasses import dataclass

from common.calibration import Calibration
from common.classes import CLASS_NAMES
from perception.detections import Detections
from perception.motion import EgoMotionFilter, MotionConfig
from perception.ranging import estimate_range
from perception.tracking import Tracker, TrackerConfig


@dataclass(frozen=True)
class PerceivedObject:
    """One tracked object of a frame.

    ``box`` ``[x1, y1, x2, y2]`` [px] (tracker-filtered); ``position_m`` ``(x, y, z)`` estimated
    centre in the ego frame [m]; ``velocity_mps`` ``(vx, vy)`` and ``accel_mps2`` ``(ax, ay)``
    relative to ego [m/s, m/s²];
    ``range_m`` to the nearest ground contact point; ``ttc_s`` ``None`` when not closing;
    position, velocity, range and TTC are ``None`` when the box could not be ranged.
    """

    track_id: int
    class_id: int
    class_name: str
    score: float
    box: tuple[float, float, float, float]
    position_m: tuple[float, float, float] | None
    velocity_mps: tuple[float, float] | None
    accel_mps2: tuple[float, float] | None
    range_m: float | None
    ttc_s: float | None
    range_method: str | None


class CameraPerception:
    """Tracker + ranging + ego-frame motion filter for one camera."""

    def __init__(
        self,
        calibration: Calibration,
        *,
        tracker_config: TrackerConfig | None = None,
        motion_config: MotionConfig | None = None,
        class_names: tuple[str, ...] = CLASS_NAMES,
    ) -> None:
        self.calibration = calibration
        self.tracker = Tracker(tracker_config)
        self.motion = EgoMotionFilter(motion_config)
        self.class_names = class_names

    def update(self, detections: Detections, stamp_ns: int) -> list[PerceivedObject]:
        """Fuse one frame's detections captured at ``stamp_ns``; objects ordered by track id."""
        tracks = self.tracker.update(
            detections.boxes, detections.class_ids, detections.scores, stamp_ns
        )
        objects = []
        for t in tracks:
            box = (float(t.box[0]), float(t.box[1]), float(t.box[2]), float(t.box[3]))
            name = self.class_names[t.class_id] if t.class_id < len(self.class_names) else "?"
            est = estimate_range(t.box, t.class_id, self.calibration)
            if est is None:
                objects.append(
                    PerceivedObject(t.track_id, t.class_id, name, t.score, box,
                                    None, None, None, None, None, None)
                )
                continue
            m = self.motion.update(t.track_id, est, self.calibration, stamp_ns)
            objects.append(
                PerceivedObject(
                    track_id=t.track_id,
                    class_id=t.class_id,
                    class_name=name,
                    score=t.score,
                    box=box,
                    position_m=(m.position_m[0], m.position_m[1], est.position_m[2]),
                    velocity_mps=m.velocity_mps,
                    accel_mps2=m.accel_mps2,
                    range_m=m.range_m,
                    ttc_s=m.ttc_s,
                    range_method=est.method,
                )
            )
        self.motion.prune(stamp_ns, keep=set(self.tracker.active_track_ids))
        return objects
