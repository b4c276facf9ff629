"""Multi-object tracking in image space: Kalman prediction + ByteTrack-style association.

Each track filters its box ``[cx, cy, w, h]`` with a constant-velocity Kalman filter (noise
scaled by the box height, as in ByteTrack/DeepSORT). Per frame, within each class:

1. high-score detections ↔ confirmed and lost tracks (Hungarian on 1 − IoU of the predicted
   box, IoU ≥ ``match_iou``);
2. low-score detections ↔ confirmed tracks still unmatched that were seen last frame
   (IoU ≥ ``low_match_iou``) — this keeps tracks alive through partial occlusion;
3. remaining high-score detections ↔ tentative tracks; the rest start new tentative tracks.

A lost track coasts on its prediction for up to ``max_lost_frames`` frames, so an object that
reappears where it was heading keeps its id. Pure and deterministic: same input, same ids.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import numpy as np
from scipy.optimize import linear_sum_assignment

from common.kalman import ConstantVelocityKalman


class TrackState(Enum):
    """Life cycle: tentative → confirmed ⇄ lost → removed."""

    TENTATIVE = "tentative"
    CONFIRMED = "confirmed"
    LOST = "lost"


@dataclass(frozen=True)
class TrackerConfig:
    """Tracker thresholds; scores in [0, 1], IoU in [0, 1], ages in frames.

    The defaults of birth (``min_hits``, ``BIRTH_MARGIN``) and of the filter's noise were chosen
    on the **validation** seeds of ``roadstream eval --tracking --split val`` (a grid over birth
    score, hits to confirm and the noise ratio), then measured once on the held-out test seeds;
    see docs/benchmarks.md. A low measurement noise relative to the process noise keeps the
    output box on the detection: a smoother filter lags a braking or turning object by enough
    to fall under IoU 0.5 (a localisation error counts as a false positive and a miss).
    """

    high_thresh: float = 0.5  # detections at or above take part in stage 1 and spawn tracks
    low_thresh: float = 0.1  # detections between low and high only extend existing tracks
    new_track_thresh: float = 0.6
    match_iou: float = 0.2
    low_match_iou: float = 0.5
    tentative_match_iou: float = 0.3
    min_hits: int = 3  # matched frames before a track is confirmed (first frame: immediate)
    max_lost_frames: int = 30
    meas_std_frac: float = 0.02  # box measurement noise, fraction of box height
    accel_std_frac: float = 1.0  # process noise, fraction of box height per s²

    @classmethod
    def at_operating_score(cls, score: float | None) -> TrackerConfig:
        """Thresholds at a detector's calibrated operating score (``perception.operating_point``).

        Detections at or above the score + ``BIRTH_MARGIN`` start and extend tracks (the
        operating score maximises per-frame F1; a track's birth is asked a little more, since a
        false track persists); lower ones, down to 0.1 or half the score if that is lower, only
        extend existing tracks. ``None``: the defaults.
        """
        if score is None:
            return cls()
        birth = min(score + BIRTH_MARGIN, 0.95)
        return cls(high_thresh=birth, new_track_thresh=birth,
                   low_thresh=min(cls.low_thresh, 0.5 * score))


#: How far above the operating score a detection must be to start a track (``at_operating_score``).
BIRTH_MARGIN = 0.05


@dataclass(frozen=True)
class TrackedObject:
    """A confirmed track's state after this frame's update.

    ``box`` ``[x1, y1, x2, y2]`` [px] (filtered); ``velocity_pxps`` ``(vx, vy)`` of the box
    centre [px/s]; ``score`` of the detection it matched.
    """

    track_id: int
    class_id: int
    score: float
    box: np.ndarray
    velocity_pxps: np.ndarray
    hits: int
    age_frames: int


def xyxy_to_cxcywh(box: np.ndarray) -> np.ndarray:
    """``[x1, y1, x2, y2]`` → ``[cx, cy, w, h]`` (last axis)."""
    b = np.asarray(box, dtype=np.float64)
    return np.stack(
        [(b[..., 0] + b[..., 2]) / 2, (b[..., 1] + b[..., 3]) / 2, b[..., 2] - b[..., 0],
         b[..., 3] - b[..., 1]],
        axis=-1,
    )


def cxcywh_to_xyxy(box: np.ndarray) -> np.ndarray:
    """``[cx, cy, w, h]`` → ``[x1, y1, x2, y2]`` (last axis)."""
    b = np.asarray(box, dtype=np.float64)
    half_w, half_h = b[..., 2] / 2, b[..., 3] / 2
    return np.stack(
        [b[..., 0] - half_w, b[..., 1] - half_h, b[..., 0] + half_w, b[..., 1] + half_h], axis=-1
    )


def _intersections(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``a`` and ``b`` as float ``(N, 4)``/``(M, 4)`` xyxy arrays and their pairwise intersection areas."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    ix1 = np.maximum(a[:, None, 0], b[None, :, 0])
    iy1 = np.maximum(a[:, None, 1], b[None, :, 1])
    ix2 = np.minimum(a[:, None, 2], b[None, :, 2])
    iy2 = np.minimum(a[:, None, 3], b[None, :, 3])
    return a, b, np.clip(ix2 - ix1, 0, None) * np.clip(iy2 - iy1, 0, None)


def ioa_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise intersection over the area of ``a``'s box, xyxy ``(N, 4)`` × ``(M, 4)`` → ``(N, M)``."""
    a, _, inter = _intersections(a, b)
    area_a = np.maximum((a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1]), 1e-9)
    return inter / area_a[:, None]


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of xyxy boxes ``(N, 4)`` × ``(M, 4)`` → ``(N, M)``."""
    a, b, inter = _intersections(a, b)
    area_a = np.clip(a[:, 2] - a[:, 0], 0, None) * np.clip(a[:, 3] - a[:, 1], 0, None)
    area_b = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


class _Track:
    def __init__(
        self, track_id: int, box: np.ndarray, class_id: int, score: float, cfg: TrackerConfig
    ) -> None:
        self.track_id = track_id
        self.class_id = class_id
        self.score = score
        self.cfg = cfg
        z = xyxy_to_cxcywh(box)
        h = max(float(z[3]), 1.0)
        self.kf = ConstantVelocityKalman(
            z, position_std=2 * cfg.meas_std_frac * h, velocity_std=10 * cfg.meas_std_frac * h
        )
        self.state = TrackState.TENTATIVE
        self.hits = 1
        self.age = 1
        self.lost_frames = 0

    def height(self) -> float:
        return max(float(self.kf.x[3]), 1.0)

    def predict(self, dt_s: float) -> None:
        self.kf.predict(dt_s, self.cfg.accel_std_frac * self.height())
        if self.kf.x[2] < 1.0 or self.kf.x[3] < 1.0:
            # A shrinking box must not invert; stop its size from changing further.
            self.kf.x[2:4] = np.maximum(self.kf.x[2:4], 1.0)
            self.kf.x[6:8] = 0.0
        self.age += 1

    def box(self) -> np.ndarray:
        return cxcywh_to_xyxy(self.kf.x[:4])

    def update(self, box: np.ndarray, score: float) -> None:
        self.kf.update(xyxy_to_cxcywh(box), self.cfg.meas_std_frac * self.height())
        self.score = score
        self.hits += 1
        self.lost_frames = 0


def _assign(
    tracks: list[_Track],
    boxes: np.ndarray,
    classes: np.ndarray,
    det_idx: list[int],
    min_iou: float,
) -> tuple[list[tuple[_Track, int]], list[_Track], list[int]]:
    """Hungarian matching of ``tracks`` to detections ``det_idx`` within each class."""
    if not tracks or not det_idx:
        return [], list(tracks), list(det_idx)
    track_boxes = np.stack([t.box() for t in tracks])
    iou = iou_matrix(track_boxes, boxes[det_idx])
    same_class = np.array([t.class_id for t in tracks])[:, None] == classes[det_idx][None, :]
    iou = np.where(same_class, iou, 0.0)
    cost = np.where(iou >= min_iou, 1.0 - iou, 1e6)
    rows, cols = linear_sum_assignment(cost)
    matches = [(tracks[r], det_idx[c]) for r, c in zip(rows, cols, strict=True) if cost[r, c] < 1e6]
    matched_t = {id(t) for t, _ in matches}
    matched_d = {d for _, d in matches}
    return (
        matches,
        [t for t in tracks if id(t) not in matched_t],
        [d for d in det_idx if d not in matched_d],
    )


class Tracker:
    """Multi-object tracker for one camera stream; call ``update`` once per frame, in order."""

    def __init__(self, config: TrackerConfig | None = None) -> None:
        self.config = config or TrackerConfig()
        self._tracks: list[_Track] = []
        self._next_id = 1
        self._last_stamp_ns: int | None = None
        self._frames = 0

    @property
    def active_track_ids(self) -> list[int]:
        """Ids of tracks kept (tentative, confirmed or lost), ascending."""
        return sorted(t.track_id for t in self._tracks)

    def update(
        self,
        boxes: np.ndarray,
        class_ids: np.ndarray,
        scores: np.ndarray,
        stamp_ns: int,
    ) -> list[TrackedObject]:
        """Advance to ``stamp_ns`` and fuse this frame's detections.

        ``boxes`` ``(N, 4)`` xyxy [px], ``class_ids`` ``(N,)``, ``scores`` ``(N,)``. A stamp
        that does not move forward is treated as no elapsed time. Returns the confirmed tracks
        matched in this frame, ordered by track id.
        """
        cfg = self.config
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        classes = np.asarray(class_ids, dtype=np.int64).reshape(-1)
        scores = np.asarray(scores, dtype=np.float64).reshape(-1)
        if not boxes.shape[0] == classes.shape[0] == scores.shape[0]:
            raise ValueError("boxes, class_ids and scores must have the same length")
        dt_s = 0.0
        if self._last_stamp_ns is not None:
            dt_s = max(0.0, (stamp_ns - self._last_stamp_ns) * 1e-9)
        self._last_stamp_ns = stamp_ns if self._last_stamp_ns is None else max(
            stamp_ns, self._last_stamp_ns
        )
        first_frame = self._frames == 0
        self._frames += 1
        for t in self._tracks:
            t.predict(dt_s)

        high = [i for i in range(len(scores)) if scores[i] >= cfg.high_thresh]
        low = [i for i in range(len(scores)) if cfg.low_thresh <= scores[i] < cfg.high_thresh]
        established = [t for t in self._tracks if t.state is not TrackState.TENTATIVE]
        tentative = [t for t in self._tracks if t.state is TrackState.TENTATIVE]

        m1, left_tracks, left_high = _assign(established, boxes, classes, high, cfg.match_iou)
        seen_last = [t for t in left_tracks if t.state is TrackState.CONFIRMED]
        m2, _, _ = _assign(seen_last, boxes, classes, low, cfg.low_match_iou)
        m3, _, new_dets = _assign(tentative, boxes, classes, left_high, cfg.tentative_match_iou)

        matched: list[_Track] = []
        for track, d in (*m1, *m2, *m3):
            track.update(boxes[d], float(scores[d]))
            if track.state is TrackState.LOST or track.hits >= cfg.min_hits:
                track.state = TrackState.CONFIRMED
            matched.append(track)
        matched_ids = {id(t) for t in matched}
        survivors = []
        for track in self._tracks:
            if id(track) in matched_ids:
                survivors.append(track)
            elif track.state is TrackState.TENTATIVE:
                continue  # an unconfirmed track that misses a frame was likely a false positive
            else:
                track.state = TrackState.LOST
                track.lost_frames += 1
                if track.lost_frames <= cfg.max_lost_frames:
                    survivors.append(track)
        for d in new_dets:
            if scores[d] < cfg.new_track_thresh:
                continue
            track = _Track(self._next_id, boxes[d], int(classes[d]), float(scores[d]), cfg)
            self._next_id += 1
            if first_frame or cfg.min_hits <= 1:
                track.state = TrackState.CONFIRMED
            survivors.append(track)
            matched.append(track)
        self._tracks = survivors
        return [
            TrackedObject(
                track_id=t.track_id,
                class_id=t.class_id,
                score=t.score,
                box=t.box(),
                velocity_pxps=t.kf.x[4:6].copy(),
                hits=t.hits,
                age_frames=t.age,
            )
            for t in sorted(matched, key=lambda t: t.track_id)
            if t.state is TrackState.CONFIRMED
        ]
