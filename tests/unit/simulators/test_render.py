"""Renderer output, lighting and weather, JPEG encoding, and the benchmark function."""

from __future__ import annotations

import cv2
import numpy as np

from simulators.bench import bench_render
from simulators.contact_sheet import contact_sheet
from simulators.render import RenderOptions, encode_jpeg
from simulators.world import World
from tests.unit.simulators.scenario_helpers import make_scenario

CLEAN = RenderOptions(noise=False, motion_blur=False, glow=False)


def frame(condition: str, options: RenderOptions = CLEAN, **env: object) -> np.ndarray:
    actors = [{"id": "lead", "class": "car", "s_m": 25, "lane": 0,
               "appearance": {"body": "sedan", "colour": "grey"}}]
    sc = make_scenario(actors=actors, environment={"condition": condition, **env},
                       ego={"lane": 0, "speed_kph": 0})
    return World.from_scenario(sc).render("front", options)


def test_frame_is_bgr_uint8_of_the_camera_size() -> None:
    img = frame("day")
    assert img.shape == (360, 640, 3)
    assert img.dtype == np.uint8
    # sky above (blue dominant), asphalt below (grey)
    sky, road = img[20, 320].astype(int), img[340, 320].astype(int)
    assert sky[0] > sky[2] + 20
    assert abs(road[0] - road[2]) < 15
    assert 40 < road.mean() < 140


def test_night_is_dark_with_lit_tail_lights() -> None:
    day, night = frame("day"), frame("night")
    assert night.mean() < day.mean() * 0.35
    red = (night[..., 2].astype(int) - night[..., 0].astype(int)) > 100
    assert red.sum() > 20  # the lead car's tail lights glow red


def test_fog_thickens_with_distance() -> None:
    fog = frame("fog", visibility_m=40.0).astype(float)
    day = frame("day").astype(float)
    # the far road near the horizon is fog-grey, the near road still dark asphalt
    horizon_row, near_row = 170, 350
    assert fog[horizon_row, 100].mean() > fog[near_row, 320].mean() + 60
    # the car at 25 m loses contrast against the fog compared with a clear day
    car = (slice(150, 185), slice(300, 340))
    assert fog[car].std() < day[car].std()


def test_rain_adds_streaks_and_darkens() -> None:
    dry = frame("rain", RenderOptions(noise=False, motion_blur=False, weather=False))
    wet = frame("rain", RenderOptions(noise=False, motion_blur=False, weather=True))
    diff = wet.astype(int) - dry.astype(int)
    assert (diff > 15).sum() > 500  # bright thin streaks
    assert frame("rain").mean() < frame("day").mean()


def test_motion_blur_grows_with_speed() -> None:
    def sharpness(speed_kph: float) -> float:
        sc = make_scenario(ego={"lane": 0, "speed_kph": speed_kph})
        img = World.from_scenario(sc).render("front", RenderOptions(noise=False))
        return float(cv2.Laplacian(cv2.cvtColor(img, cv2.COLOR_BGR2GRAY), cv2.CV_64F).var())

    assert sharpness(120) < sharpness(0) * 0.9


def test_encode_jpeg_round_trips() -> None:
    img = frame("day")
    data = encode_jpeg(img, 90)
    assert data[:2] == b"\xff\xd8"
    back = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert back is not None
    assert back.shape == img.shape
    assert np.abs(back.astype(int) - img.astype(int)).mean() < 4


def test_bench_render_reports_fps() -> None:
    out = bench_render(160, 90, frames=3, repeats=2, warmup=1)
    assert out["width"] == 160
    assert len(out["fps_runs"]) == 2
    assert out["fps_median"] > 0
    assert out["render_ms_median"] > 0
    assert cv2.getNumThreads() > 0  # restored after the run


def test_contact_sheet_tiles_a_grid() -> None:
    sheet = contact_sheet([("ccrs_30kph", 1.0), ("cpna_40kph_night", 0.5), ("fog_highway", 0.2)],
                          columns=2, tile_size=(160, 90), boxes_on=(0,))
    assert sheet.shape == (180, 320, 3)
    assert sheet[90:, 160:].max() == 0  # the empty fourth tile
