"""Detection results as plain numpy arrays (no torch), shared by detector, tracker and evaluation."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Detections:
    """Detections of one image.

    ``boxes`` ``(N, 4)`` float32 ``[x1, y1, x2, y2]`` [px] in the input image; ``class_ids``
    ``(N,)`` int64, our 1-based ids; ``scores`` ``(N,)`` float32 in [0, 1], highest first.
    """

    boxes: np.ndarray
    class_ids: np.ndarray
    scores: np.ndarray

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    @classmethod
    def empty(cls) -> Detections:
        """No detections."""
        return cls(
            np.zeros((0, 4), np.float32), np.zeros((0,), np.int64), np.zeros((0,), np.float32)
        )

    @classmethod
    def from_arrays(cls, boxes: object, class_ids: object, scores: object) -> Detections:
        """Build with the documented dtypes and shapes; raises ``ValueError`` on length mismatch."""
        b = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
        c = np.asarray(class_ids, dtype=np.int64).reshape(-1)
        s = np.asarray(scores, dtype=np.float32).reshape(-1)
        if not b.shape[0] == c.shape[0] == s.shape[0]:
            raise ValueError(f"{b.shape[0]} boxes, {c.shape[0]} class ids, {s.shape[0]} scores")
        return cls(b, c, s)
