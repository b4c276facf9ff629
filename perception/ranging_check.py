"""Ranging of vehicles cut by the image side, on the simulator's true boxes.

``python -m perception.ranging_check [SCENARIO ...]`` drives each scenario open loop (seed 1,
its first camera, 20 s at most), ranges every true car and truck box that a side of the image
cuts with :func:`perception.ranging.estimate_range`, and prints the median errors against the
true centre (objects within 40 m), beside those of the uncut boxes. True boxes isolate the
geometry from the detector; ``roadstream eval --tracking`` measures ranging end to end.
"""

from __future__ import annotations

import json
import sys

import numpy as np

from common.calibration import Calibration
from common.classes import CLASS_IDS
from perception.ranging import estimate_range
from simulators.library import load_scenario
from simulators.world import World

DEFAULT_SCENARIOS = ("free_cruise", "free_cruise_rain", "cpnc_40kph", "overtake_slow_truck")
EDGE_PX = 2.0  # a true box this close to a side is cut by it
WITHIN_M = 40.0


def side_cut_errors(names: tuple[str, ...] = DEFAULT_SCENARIOS,
                    seconds: float = 20.0) -> dict[str, dict[str, float | int]]:
    """Median |lateral| and signed longitudinal error [m] of cut and uncut vehicle boxes."""
    rows: dict[str, list[tuple[float, float]]] = {"side_cut": [], "uncut": []}
    for name in names:
        scenario = load_scenario(name)
        world = World.from_scenario(scenario, seed=1)
        cam = world.cameras[scenario.cameras[0].id]
        calib = Calibration.model_validate(cam.calibration())
        for _ in range(round(seconds * cam.rate_hz)):
            if world.done:
                break
            for o in world.ground_truth(cam.camera_id).objects:
                if o.object_class not in ("car", "truck") or o.position_m[0] > WITHIN_M:
                    continue
                est = estimate_range(np.array(o.box), CLASS_IDS[o.object_class], calib)
                if est is None:
                    continue
                cut = o.box[0] <= EDGE_PX or o.box[2] >= calib.width - EDGE_PX
                rows["side_cut" if cut else "uncut"].append(
                    (est.position_m[0] - o.position_m[0], est.position_m[1] - o.position_m[1]))
            world.step(1.0 / cam.rate_hz)
    out: dict[str, dict[str, float | int]] = {}
    for kind, errors in rows.items():
        e = np.array(errors).reshape(-1, 2)
        out[kind] = {"boxes": len(e),
                     "lateral_abs_median_m": round(float(np.median(np.abs(e[:, 1]))), 3)
                     if len(e) else float("nan"),
                     "longitudinal_median_m": round(float(np.median(e[:, 0])), 3)
                     if len(e) else float("nan")}
    return out


def main(argv: list[str] | None = None) -> int:
    """Print the figures as JSON for the scenarios named (default: four with cars beside)."""
    names = tuple(argv if argv is not None else sys.argv[1:]) or DEFAULT_SCENARIOS
    print(json.dumps(side_cut_errors(names), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
