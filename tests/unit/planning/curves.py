"""A road that is straight up to a point ahead and then curves, in exact geometry."""

from __future__ import annotations

import math

RADIUS_M = 1200.0  # a left-hand motorway curve
CURVE_START_M = 30.0  # ahead of the ego's foot point


def on_curve(s_m: float, d_m: float) -> tuple[float, float, float]:
    """Road-frame x, y and lane heading of Frenet (s, d) on a road that is straight up to
    CURVE_START_M and then turns left at RADIUS_M (exact geometry)."""
    if s_m <= CURVE_START_M:
        return s_m, d_m, 0.0
    phi = (s_m - CURVE_START_M) / RADIUS_M
    x = CURVE_START_M + RADIUS_M * math.sin(phi) - d_m * math.sin(phi)
    y = RADIUS_M * (1.0 - math.cos(phi)) + d_m * math.cos(phi)
    return x, y, phi


PREVIEW = tuple(0.0 if 5.0 * i < CURVE_START_M else 1.0 / RADIUS_M for i in range(40))
