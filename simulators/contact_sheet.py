"""A contact sheet: a grid of frames across scenarios and conditions, some with true boxes."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
from numpy.typing import NDArray

from simulators.library import load_scenario
from simulators.world import World

U8 = NDArray[np.uint8]

# (scenario, time [s]) of each tile: the NCAP set, everyday driving, then light and weather
DEFAULT_TILES: tuple[tuple[str, float], ...] = (
    ("ccrs_30kph", 5.4), ("ccrb_50kph_12m", 3.2), ("cpna_40kph", 5.3), ("cpfa_40kph", 4.6),
    ("cpnc_40kph", 5.0), ("cbla_30kph", 7.0), ("curved_road", 7.0), ("stop_and_go", 5.5),
    ("cut_in", 4.0), ("overtake_slow_truck", 8.5), ("stopped_vehicle", 4.5),
    ("dusk_commute", 3.0), ("night_city", 3.5), ("free_cruise_night", 2.0),
    ("fog_highway", 5.5), ("rain_cut_in", 2.6),
)
BOX_COLOURS = {"car": (60, 220, 60), "truck": (220, 160, 40), "pedestrian": (40, 80, 255),
               "cyclist": (240, 60, 240)}


def draw_ground_truth(img: U8, world: World, camera: str, min_visible: float = 0.05) -> U8:
    """Draw the camera's true boxes (class colour, visible fraction) onto a copy of `img`."""
    out = img.copy()
    for obj in world.ground_truth(camera).objects:
        if obj.visible_fraction < min_visible:
            continue
        x1, y1, x2, y2 = (round(v) for v in obj.box)
        colour = BOX_COLOURS[obj.object_class]
        cv2.rectangle(out, (x1, y1), (x2, y2), colour, 1, cv2.LINE_AA)
        label = f"{obj.object_class} {obj.visible_fraction:.2f}"
        cv2.putText(out, label, (x1, max(y1 - 3, 9)), cv2.FONT_HERSHEY_SIMPLEX, 0.33, colour, 1,
                    cv2.LINE_AA)
    return out


def render_at(scenario: str, t_s: float, camera: str | None = None, dt_s: float = 0.05
              ) -> tuple[World, U8]:
    """Run `scenario` open loop to `t_s` (or its end) and render one camera."""
    world = World.from_scenario(load_scenario(scenario))
    cam = camera or world.scenario.cameras[0].id
    while world.t_s < t_s - 1e-9 and not world.done:
        world.step(dt_s)
    return world, world.render(cam)


def contact_sheet(tiles: Sequence[tuple[str, float]] = DEFAULT_TILES, *, columns: int = 4,
                  tile_size: tuple[int, int] = (400, 225), boxes_on: Sequence[int] = (0, 2, 4, 8, 12),
                  camera: str | None = None) -> U8:
    """A BGR grid of frames, `columns` wide; tiles whose index is in `boxes_on` show true boxes.

    Each tile is labelled with its scenario name and condition.
    """
    tw, th = tile_size
    images = []
    for i, (name, t_s) in enumerate(tiles):
        world, img = render_at(name, t_s, camera)
        cam = camera or world.scenario.cameras[0].id
        if i in boxes_on:
            img = draw_ground_truth(img, world, cam)
        img = np.asarray(cv2.resize(img, (tw, th), interpolation=cv2.INTER_AREA), dtype=np.uint8)
        label = f"{name}  t={world.t_s:.1f}s  {world.scenario.environment.condition}"
        cv2.rectangle(img, (0, 0), (min(tw, 9 + 7 * len(label)), 17), (20, 20, 20), -1)
        cv2.putText(img, label, (5, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (235, 235, 235), 1,
                    cv2.LINE_AA)
        images.append(img)
    while len(images) % columns:
        images.append(np.zeros((th, tw, 3), np.uint8))
    rows = [np.hstack(images[r : r + columns]) for r in range(0, len(images), columns)]
    return np.vstack(rows)


def write_contact_sheet(path: str | Path, **kwargs: object) -> Path:
    """Render `contact_sheet(**kwargs)` and write it as PNG to `path`."""
    img = contact_sheet(**kwargs)  # type: ignore[arg-type]
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(out), img, [cv2.IMWRITE_PNG_COMPRESSION, 9]):
        raise OSError(f"could not write {out}")
    return out
