"""Labelled detection data rendered from the scenario library, written as COCO JSON + JPEG.

A *scene* is one (scenario, seed, condition) triple; each scene is randomised from its seed
(camera mount height/pitch/yaw/roll jitter, actor start stations and speeds, rain strength; actor
colours and bodies are drawn by the simulator from the same seed) and sampled at a few instants.

Split rule (no test scene is seen in training): every split draws its seeds from its own
disjoint range, ``seed = SPLIT_SEED_BASE[split] + scene_index`` (train 0…, val 1 000 000…,
test 2 000 000…), so a (seed, condition) pair — and thus a scene — belongs to one split only.
Conditions are assigned round-robin (``day, dusk, night, rain, fog``) and scenarios cycle
through the library, so each split covers every condition and scenario about equally.

Label rule: an object is a normal annotation when ``visible_fraction >= MIN_VISIBLE`` and its
box is at least ``MIN_BOX_H_PX`` tall and ``MIN_BOX_W_PX`` wide at the rendered size; any
other object in the frame is written with ``iscrowd = 1`` — an *ignore* region: training drops
it and evaluation discards detections that fall mostly inside it (COCO's crowd semantics).
Every image records ``condition``, ``scenario``, ``seed``, ``scene_id`` and ``t_s``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from common.classes import CLASS_NAMES
from simulators.library import list_scenarios, load_scenario
from simulators.scenario import Scenario
from simulators.world import World

CONDITIONS: tuple[str, ...] = ("day", "dusk", "night", "rain", "fog")
SPLITS: tuple[str, ...] = ("train", "val", "test")
SPLIT_SEED_BASE: dict[str, int] = {"train": 0, "val": 1_000_000, "test": 2_000_000}
MIN_VISIBLE = 0.3  # visible_fraction below this → ignore region
MIN_BOX_H_PX = 8.0  # [px] at 360 px image height; scaled with the rendered height
MIN_BOX_W_PX = 4.0  # [px] at 640 px image width; scaled with the rendered width
NATIVE_SIZE: tuple[int, int] = (640, 360)  # (w, h) [px] of the library cameras
JPEG_QUALITY = 90


@dataclass(frozen=True)
class SceneSpec:
    """One scene to render: a library scenario under a condition, randomised from ``seed``."""

    split: str
    index: int  # scene index within its split
    scenario: str
    seed: int
    condition: str
    frames: int  # instants sampled from the scene


@dataclass(frozen=True)
class Frame:
    """One rendered, labelled frame (before it is written to disk)."""

    scene: SceneSpec
    frame_index: int
    t_s: float
    image_bgr: np.ndarray
    objects: list[dict[str, Any]]  # category_id, bbox xyxy [px], iscrowd, visible_fraction, range_m


def plan_scenes(
    split: str, n_images: int, *, frames_per_scene: int = 6, scenarios: Sequence[str] | None = None
) -> list[SceneSpec]:
    """Scenes for ``split`` giving ``n_images`` frames; deterministic (see the module rule)."""
    if split not in SPLIT_SEED_BASE:
        raise ValueError(f"unknown split {split!r}; known: {', '.join(SPLITS)}")
    names = list(scenarios) if scenarios is not None else [i.name for i in list_scenarios()]
    if not names:
        raise ValueError("no scenarios to render")
    scenes = []
    remaining, i = n_images, 0
    while remaining > 0:
        k = min(frames_per_scene, remaining)
        condition = CONDITIONS[i % len(CONDITIONS)]
        scenario = names[(i // len(CONDITIONS) + i) % len(names)]
        scenes.append(SceneSpec(split, i, scenario, SPLIT_SEED_BASE[split] + i, condition, k))
        remaining -= k
        i += 1
    return scenes


def randomise_scenario(sc: Scenario, condition: str, rng: np.random.Generator) -> Scenario:
    """A copy of ``sc`` under ``condition`` with camera-pose and actor jitter drawn from ``rng``."""
    data = sc.model_dump(by_alias=True)
    env = data["environment"]
    env["condition"] = condition
    env["visibility_m"] = None
    env["rain_intensity"] = float(rng.uniform(0.3, 1.0))
    for cam in data["cameras"]:
        mount = cam["mount"]
        mount["z_m"] = float(max(0.9, mount["z_m"] + rng.uniform(-0.2, 0.25)))
        mount["pitch_rad"] = float(mount["pitch_rad"] + rng.uniform(-0.035, 0.035))
        mount["yaw_rad"] = float(mount["yaw_rad"] + rng.uniform(-0.03, 0.03))
        mount["roll_rad"] = float(mount["roll_rad"] + rng.uniform(-0.02, 0.02))
    for actor in data["actors"]:
        actor["s_m"] = float(max(0.0, actor["s_m"] + rng.uniform(-6.0, 6.0)))
        actor["speed_kph"] = float(actor["speed_kph"] * rng.uniform(0.85, 1.15))
        if rng.random() < 0.5:  # let the simulator draw a colour from the seed
            actor["appearance"]["colour"] = None
    return Scenario.model_validate(data)


def label_object(box: Sequence[float], class_id: int, visible_fraction: float, range_m: float,
                 w: int, h: int) -> dict[str, Any]:
    """One object of a ``w`` × ``h`` [px] frame as a label: the module's label rule.

    ``box`` is [x1, y1, x2, y2] [px] in that frame; the result holds ``category_id``, ``box``,
    ``iscrowd`` (1: an ignore region), ``visible_fraction`` and ``range_m`` [m]. The dataset
    builder and the retraining data from recordings (``services.retrain``) both label with it.
    """
    x1, y1, x2, y2 = (float(v) for v in box)
    ok = (
        visible_fraction >= MIN_VISIBLE
        and (y2 - y1) >= MIN_BOX_H_PX * h / NATIVE_SIZE[1]
        and (x2 - x1) >= MIN_BOX_W_PX * w / NATIVE_SIZE[0]
    )
    return {
        "category_id": int(class_id),
        "box": [x1, y1, x2, y2],
        "iscrowd": 0 if ok else 1,
        "visible_fraction": round(float(visible_fraction), 4),
        "range_m": round(float(range_m), 3),
    }


def _label(obj: Any, w: int, h: int) -> dict[str, Any]:
    return label_object(obj.box, obj.class_id, obj.visible_fraction, obj.range_m, w, h)


def render_scene(scene: SceneSpec, size: tuple[int, int] = NATIVE_SIZE) -> list[Frame]:
    """Render ``scene`` at ``size`` (w, h) [px]: ``scene.frames`` instants of its first camera."""
    rng = np.random.default_rng([scene.seed, 7331])
    sc = randomise_scenario(load_scenario(scene.scenario), scene.condition, rng)
    world = World.from_scenario(sc, seed=scene.seed)
    cam_id = sc.cameras[0].id
    camera = world.cameras[cam_id].scaled(*size)
    # Instants spread over the scene (jittered) so frames of one scene are not near-duplicates.
    span = sc.duration_s * 0.95
    slots = (np.arange(scene.frames) + rng.uniform(0.1, 0.9, scene.frames)) / scene.frames
    times = np.sort(slots * span)
    frames: list[Frame] = []
    dt = 0.1  # [s] stepping interval
    for k, t in enumerate(times):
        while world.t_s + dt <= t and not world.done:
            world.step(dt)
        img = world.render(camera)
        gt = world.ground_truth(camera)
        objects = [_label(o, *size) for o in gt.objects]
        frames.append(Frame(scene, k, float(world.t_s), img, objects))
    return frames


def _category_list() -> list[dict[str, Any]]:
    return [{"id": i, "name": n, "supercategory": "road_user"}
            for i, n in enumerate(CLASS_NAMES) if i > 0]


def coco_annotation(ann_id: int, image_id: int, label: dict[str, Any]) -> dict[str, Any]:
    """The COCO annotation (``bbox`` xywh [px]) of a ``label_object`` label."""
    x1, y1, x2, y2 = label["box"]
    bw, bh = x2 - x1, y2 - y1
    return {"id": ann_id, "image_id": image_id, "category_id": label["category_id"],
            "bbox": [x1, y1, bw, bh], "area": bw * bh, "iscrowd": label["iscrowd"],
            "visible_fraction": label["visible_fraction"], "range_m": label["range_m"]}


def coco_document(info: dict[str, Any], images: list[dict[str, Any]],
                  annotations: list[dict[str, Any]]) -> dict[str, Any]:
    """A COCO detection document with this project's categories."""
    return {"info": info, "images": images, "annotations": annotations,
            "categories": _category_list()}


class CocoWriter:
    """Accumulates frames of one split and writes ``<root>/<split>.json`` + JPEG images."""

    def __init__(self, root: Path, split: str) -> None:
        self.root, self.split = root, split
        (root / split).mkdir(parents=True, exist_ok=True)
        self.images: list[dict[str, Any]] = []
        self.annotations: list[dict[str, Any]] = []

    def add(self, frame: Frame) -> None:
        """Write the frame's JPEG and record its image and annotation entries."""
        s = frame.scene
        name = f"{self.split}/{s.index:06d}_{frame.frame_index:02d}.jpg"
        ok, buf = cv2.imencode(".jpg", frame.image_bgr, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        if not ok:
            raise ValueError(f"JPEG encoding failed for {name}")
        (self.root / name).write_bytes(buf.tobytes())
        image_id = len(self.images) + 1
        h, w = frame.image_bgr.shape[:2]
        self.images.append({
            "id": image_id, "file_name": name, "width": int(w), "height": int(h),
            "condition": s.condition, "scenario": s.scenario, "seed": s.seed,
            "scene_id": f"{s.scenario}/{s.seed}/{s.condition}", "t_s": round(frame.t_s, 3),
        })
        for obj in frame.objects:
            self.annotations.append(coco_annotation(len(self.annotations) + 1, image_id, obj))

    def write(self, info: dict[str, Any]) -> Path:
        """Write ``<split>.json``; returns its path."""
        path = self.root / f"{self.split}.json"
        doc = coco_document({**info, "split": self.split}, self.images, self.annotations)
        path.write_text(json.dumps(doc))
        return path


def _render_job(args: tuple[SceneSpec, tuple[int, int]]) -> list[Frame]:
    return render_scene(*args)


def _rendered(scenes: list[SceneSpec], size: tuple[int, int], workers: int) -> Iterator[list[Frame]]:
    if workers <= 1:
        for s in scenes:
            yield render_scene(s, size)
        return
    with ProcessPoolExecutor(max_workers=workers) as pool:
        yield from pool.map(_render_job, [(s, size) for s in scenes], chunksize=4)


def build_dataset(
    out: str | Path,
    *,
    images: dict[str, int],
    size: tuple[int, int] = NATIVE_SIZE,
    frames_per_scene: int = 6,
    scenarios: Sequence[str] | None = None,
    workers: int = 1,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Render the splits in ``images`` (split → image count) under ``out``; returns a summary.

    ``size`` is (w, h) [px]. Output: ``out/<split>.json`` (COCO, ``bbox`` xywh [px]) and
    ``out/<split>/*.jpg``. ``progress(done_images, total_images)`` is called as frames land.
    Deterministic for the same arguments.
    """
    root = Path(out)
    total, done = sum(images.values()), 0
    summary: dict[str, Any] = {"out": str(root), "size": list(size), "splits": {}}
    info = {"description": "roadstream simulator detection data", "size_wh": list(size),
            "split_rule": "seed ranges " + json.dumps(SPLIT_SEED_BASE),
            "min_visible_fraction": MIN_VISIBLE}
    for split, n in images.items():
        if n <= 0:
            continue
        scenes = plan_scenes(split, n, frames_per_scene=frames_per_scene, scenarios=scenarios)
        writer = CocoWriter(root, split)
        for frames in _rendered(scenes, size, workers):
            for frame in frames:
                writer.add(frame)
                done += 1
            if progress is not None:
                progress(done, total)
        path = writer.write(info)
        crowd = sum(a["iscrowd"] for a in writer.annotations)
        summary["splits"][split] = {
            "json": str(path), "images": len(writer.images), "scenes": len(scenes),
            "annotations": len(writer.annotations) - crowd, "ignored": crowd,
        }
    return summary


def parse_size(text: str) -> tuple[int, int]:
    """``"640x360"`` → (640, 360) (w, h) [px]; ``ValueError`` on bad input."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError as exc:
        raise ValueError(f"size {text!r} must look like WxH, e.g. 640x360") from exc
    if w < 32 or h < 32 or not math.isfinite(w * h):
        raise ValueError(f"size {text!r} is too small (at least 32x32)")
    return w, h


def load_coco(path: str | Path) -> dict[str, Any]:
    """Read a COCO JSON file written by ``build_dataset`` (or any COCO detection file)."""
    data: dict[str, Any] = json.loads(Path(path).read_text())
    for key in ("images", "annotations", "categories"):
        if key not in data:
            raise ValueError(f"{path} is not COCO detection JSON: no {key!r}")
    return data
