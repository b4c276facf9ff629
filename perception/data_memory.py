"""A COCO split held in memory at the model's input size, with batch sampling and augmentation.

Simulator frames are small (640×360) and a few thousand of them fit in memory as uint8 once
resized to the model's input size, so training reads no files after start-up and, on CUDA,
keeps the whole split on the GPU; augmentation then runs on whole tensors there.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812 - torch's own convention

from perception.dataset import load_coco

Target = dict[str, torch.Tensor]
RARE_CLASSES = (2, 3, 4)  # truck, pedestrian, cyclist: fewer of them in the library


@dataclass
class MemoryDataset:
    """``images`` ``[N, 3, H, W]`` uint8 RGB at the model size; per image ``boxes`` ``[K, 4]``
    xyxy [px] at that size, ``labels`` ``[K]`` int64; ``ignore`` ``[J, 4]`` ignore regions in the
    source image's pixels; ``scale`` (sx, sy) from source to model size; image metadata.
    """

    images: torch.Tensor
    boxes: list[torch.Tensor]
    labels: list[torch.Tensor]
    ignore: list[np.ndarray]
    source_size: list[tuple[int, int]]  # (w, h) [px] of each source image
    conditions: list[str]
    file_names: list[str]

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def to(self, device: torch.device) -> MemoryDataset:
        """The same data with tensors on ``device``."""
        return MemoryDataset(
            self.images.to(device), [b.to(device) for b in self.boxes],
            [lab.to(device) for lab in self.labels], self.ignore, self.source_size,
            self.conditions, self.file_names,
        )

    def source_boxes(self, i: int) -> np.ndarray:
        """Image ``i``'s boxes in its source image's pixels (for evaluation)."""
        w, h = self.source_size[i]
        sx, sy = self.images.shape[3] / w, self.images.shape[2] / h
        b = self.boxes[i].detach().cpu().numpy().astype(np.float64).reshape(-1, 4)
        return b / np.array([sx, sy, sx, sy])

    def sample_weights(self, rare_boost: float) -> torch.Tensor:
        """Sampling weight per image: ``1 + rare_boost`` if it holds a rare class, else 1."""
        w = torch.ones(len(self))
        for i, lab in enumerate(self.labels):
            if any(int(c) in RARE_CLASSES for c in lab.tolist()):
                w[i] += rare_boost
        return w


def load_split(
    json_path: str | Path, image_size: tuple[int, int], *, limit: int | None = None
) -> MemoryDataset:
    """Read a COCO split written by ``perception.dataset`` into memory at ``image_size`` (h, w).

    Annotations with ``iscrowd = 1`` become ignore regions; ``limit`` keeps the first N images.
    """
    path = Path(json_path)
    coco = load_coco(path)
    root = path.parent
    h, w = image_size
    entries = coco["images"][:limit] if limit is not None else coco["images"]
    by_image: dict[int, list[dict[str, object]]] = {}
    for ann in coco["annotations"]:
        by_image.setdefault(int(ann["image_id"]), []).append(ann)
    images = torch.empty((len(entries), 3, h, w), dtype=torch.uint8)
    boxes, labels, ignore, sizes, conditions, names = [], [], [], [], [], []

    def read(entry: dict[str, Any]) -> np.ndarray:
        bgr = cv2.imread(str(root / entry["file_name"]), cv2.IMREAD_COLOR)
        if bgr is None:
            raise ValueError(f"cannot read image {root / entry['file_name']}")
        return bgr

    # OpenCV releases the GIL while decoding, so threads decode in parallel.
    with ThreadPoolExecutor(max_workers=min(16, os.cpu_count() or 1)) as pool:
        decoded = pool.map(read, entries)
    for i, (entry, bgr) in enumerate(zip(entries, decoded, strict=True)):
        src_h, src_w = bgr.shape[:2]
        rgb = cv2.cvtColor(cv2.resize(bgr, (w, h), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB)
        images[i] = torch.from_numpy(rgb).permute(2, 0, 1)
        scale = np.array([w / src_w, h / src_h, w / src_w, h / src_h])
        keep, ign, lab = [], [], []
        for ann in by_image.get(int(entry["id"]), []):
            x, y, bw, bh = (float(v) for v in ann["bbox"])  # type: ignore[attr-defined]
            xyxy = np.array([x, y, x + bw, y + bh])
            if ann.get("iscrowd", 0):
                ign.append(xyxy)
            else:
                keep.append(xyxy * scale)
                lab.append(int(ann["category_id"]))  # type: ignore[call-overload]
        boxes.append(torch.tensor(np.array(keep).reshape(-1, 4), dtype=torch.float32))
        labels.append(torch.tensor(lab, dtype=torch.int64))
        ignore.append(np.array(ign, dtype=np.float64).reshape(-1, 4))
        sizes.append((int(src_w), int(src_h)))
        conditions.append(str(entry.get("condition", "unknown")))
        names.append(str(entry["file_name"]))
    return MemoryDataset(images, boxes, labels, ignore, sizes, conditions, names)


def _zoom(
    img: torch.Tensor, boxes: torch.Tensor, labels: torch.Tensor, gen: torch.Generator,
    min_scale: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Crop a random window (``min_scale``..1 of each side) and resize it back: zoom-in."""
    _, h, w = img.shape
    s = float(torch.empty(1).uniform_(min_scale, 1.0, generator=gen))
    cw, ch = max(8, round(w * s)), max(8, round(h * s))
    x0 = int(torch.randint(0, w - cw + 1, (1,), generator=gen))
    y0 = int(torch.randint(0, h - ch + 1, (1,), generator=gen))
    crop = img[:, y0:y0 + ch, x0:x0 + cw].unsqueeze(0)
    out = F.interpolate(crop, size=(h, w), mode="bilinear", align_corners=False)[0]
    if boxes.numel() == 0:
        return out, boxes, labels
    shift = torch.tensor([x0, y0, x0, y0], dtype=boxes.dtype, device=boxes.device)
    b = boxes - shift
    lim = torch.tensor([cw, ch, cw, ch], dtype=boxes.dtype, device=boxes.device)
    clipped = torch.minimum(b.clamp(min=0), lim)
    area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    kept_area = (clipped[:, 2] - clipped[:, 0]) * (clipped[:, 3] - clipped[:, 1])
    # Boxes cut to less than half of themselves are dropped rather than taught as whole objects.
    keep = ((kept_area >= 0.5 * area) & ((clipped[:, 3] - clipped[:, 1]) >= 2.0)
            & ((clipped[:, 2] - clipped[:, 0]) >= 1.0))
    factor = torch.tensor([w / cw, h / ch, w / cw, h / ch], dtype=boxes.dtype, device=boxes.device)
    return out, clipped[keep] * factor, labels[keep]


def make_batch(
    data: MemoryDataset,
    indices: list[int],
    gen: torch.Generator,
    *,
    augment: bool,
    zoom_prob: float = 0.4,
    min_zoom: float = 0.6,
    colour_jitter: float = 0.2,
) -> tuple[list[torch.Tensor], list[Target]]:
    """Float RGB [0, 1] images and targets for ``indices``, augmented when ``augment``.

    Augmentation: horizontal flip (p 0.5), zoom-in crop (p ``zoom_prob``), brightness and
    contrast jitter (± ``colour_jitter``). Random draws come from ``gen`` (CPU generator).
    """
    images: list[torch.Tensor] = []
    targets: list[Target] = []
    for i in indices:
        img = data.images[i].float().div_(255.0)
        boxes, labels = data.boxes[i].clone(), data.labels[i].clone()
        if augment:
            w = img.shape[2]
            if float(torch.rand(1, generator=gen)) < 0.5:
                img = img.flip(2)
                boxes = torch.stack([w - boxes[:, 2], boxes[:, 1], w - boxes[:, 0], boxes[:, 3]], 1)
            if float(torch.rand(1, generator=gen)) < zoom_prob:
                img, boxes, labels = _zoom(img, boxes, labels, gen, min_zoom)
            if colour_jitter > 0:
                r = (torch.rand(2, generator=gen) * 2 - 1) * colour_jitter
                mean = img.mean()
                img = ((img - mean) * (1 + float(r[0])) + mean + float(r[1]) * 0.5).clamp_(0, 1)
        images.append(img)
        targets.append({"boxes": boxes.reshape(-1, 4), "labels": labels})
    return images, targets
