"""Monocular ranging: where a detected box stands in the ego frame, from the calibration.

The primary estimate is the box's ground contact point (bottom-centre pixel) intersected with a
flat ground plane (ego z = 0). Class height priors check it, and replace it when the contact
point cannot be used: the box is cut by the bottom image edge, the contact ray does not hit the
ground (at or above the horizon) or hits it implausibly far, or the box's height in pixels at the
ground range implies an object far taller or shorter than its class.

Frames and the camera geometry are those of ``common.calibration.Calibration``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from common.calibration import OPT_FROM_BODY, Calibration
from common.classes import ObjectClass


@dataclass(frozen=True)
class SizePrior:
    """Typical size of a class [m]; heights outside [min, max] are implausible."""

    height_m: float
    min_height_m: float
    max_height_m: float
    depth_m: float  # extent along the line of sight, used to move from the near face to the centre
    # Width of the face seen from behind; ranges a box whose bottom the image cuts off (a car
    # a few metres ahead), where the height is cut too. None: no fixed width (people turn).
    rear_width_m: float | None = None


SIZE_PRIORS: dict[int, SizePrior] = {
    ObjectClass.CAR: SizePrior(1.5, 1.2, 2.1, 4.5, rear_width_m=1.8),
    ObjectClass.TRUCK: SizePrior(3.2, 2.2, 4.3, 8.0, rear_width_m=2.5),
    # Adults are ~1.7 m, children ~1.2 m: the range covers both, the typical value is the adult.
    ObjectClass.PEDESTRIAN: SizePrior(1.7, 1.0, 2.0, 0.5),
    ObjectClass.CYCLIST: SizePrior(1.7, 1.3, 2.1, 1.8),
}


@dataclass(frozen=True)
class RangeEstimate:
    """An object's place in the ego frame.

    ``contact_m`` ``(x, y)`` [m]: nearest ground contact point (bottom-centre of the box);
    ``position_m`` ``(x, y, z)`` [m]: estimated centre (contact point pushed half the class depth
    along the line of sight, z = half the class height); ``range_m``: horizontal distance from
    the ego origin to the contact point; ``method``: ``ground``, ``size`` (apparent height),
    ``width`` (apparent width, for a box cut off at the bottom) or ``side`` (a vehicle whose box
    a side of the image cuts: the contact point is its near front corner); ``consistent``:
    whether the ground estimate agreed with the class height prior (``None`` = not checkable);
    ``implied_height_m``: object height the box implies at the chosen range.
    """

    contact_m: tuple[float, float]
    position_m: tuple[float, float, float]
    range_m: float
    method: str
    consistent: bool | None
    implied_height_m: float


def _depth_along_axis(calib: Calibration, point_ego: np.ndarray) -> float:
    return float(calib.ego_to_optical(point_ego)[0, 2])


def estimate_range(
    box: np.ndarray,
    class_id: int,
    calib: Calibration,
    *,
    truncation_margin_px: float = 2.0,
    side_margin_px: float = 8.0,
    side_band_px: float = 80.0,
    max_ground_range_m: float = 150.0,
    height_tolerance: float = 1.25,
    min_size_px: float = 32.0,
) -> RangeEstimate | None:
    """Range one box ``[x1, y1, x2, y2]`` [px] of class ``class_id`` (our ids).

    ``None`` when neither method applies (degenerate box, or the contact point is unusable and
    the class has no size prior). A vehicle's box within ``side_margin_px`` of a side of the
    image counts as cut by it: a detector's box stops a few pixels short of the edge (seen:
    636-639 of 640), and a box taken for whole there ranged a car beside 4 m too far. From
    ``side_band_px`` in, a vehicle is ranged more and more from its near side (see ``_beside``).
    ``height_tolerance`` widens the prior's height range before the ground estimate is judged
    inconsistent; a box less than ``min_size_px`` tall keeps its ground estimate even then.
    """
    x1, y1, x2, y2 = (float(v) for v in np.asarray(box).reshape(4))
    h_px = y2 - y1
    if not (h_px > 0.5 and x2 - x1 > 0.5):
        return None
    prior = SIZE_PRIORS.get(int(class_id))
    u = 0.5 * (x1 + x2)
    bottom_cut = y2 >= calib.height - truncation_margin_px
    top_cut = y1 <= truncation_margin_px

    ground = None if bottom_cut else calib.pixel_to_ground(u, y2)
    consistent: bool | None = None
    if ground is not None and math.hypot(*ground) <= max_ground_range_m:
        contact = np.array([ground[0], ground[1], 0.0])
        depth = _depth_along_axis(calib, contact)
        implied = h_px * depth / calib.fy
        if prior is None or top_cut:
            return _finish(calib, contact, "ground", None, implied, prior)
        beside = _beside(box, calib, prior, side_margin_px, side_band_px)
        if beside is not None:
            plain = _finish(calib, contact, "ground", None, implied, prior).position_m
            w = beside[3]
            cx, cy = w * beside[0] + (1.0 - w) * plain[0], w * beside[1] + (1.0 - w) * plain[1]
            # The contact point means what the ground method's does (half the class depth
            # short of the centre along the line of sight), so that range and TTC do not jump
            # when the method changes; the front corner's distance goes in range_m.
            sight = np.array([cx, cy]) - calib.mount_m[:2]
            norm = float(np.linalg.norm(sight))
            near = (np.array([cx, cy]) - sight / norm * 0.5 * prior.depth_m
                    if norm > 0.5 * prior.depth_m else np.array([cx, cy]))
            return RangeEstimate(contact_m=(float(near[0]), float(near[1])),
                                 position_m=(cx, cy, 0.5 * prior.height_m),
                                 range_m=math.hypot(*beside[2]), method="side",
                                 consistent=None, implied_height_m=implied)
        consistent = (
            prior.min_height_m / height_tolerance
            <= implied
            <= prior.max_height_m * height_tolerance
        )
        if consistent:
            return _finish(calib, contact, "ground", True, implied, prior)
        if h_px < min_size_px:
            # Too small for its height to say more than its ground contact: a detector's box
            # of a car 45 m ahead in a 100° camera was 22 px tall for 11 true, and the size
            # prior put it 21 m ahead, closing at 19 m/s (night_city, an emergency brake).
            return _finish(calib, contact, "ground", False, implied, prior)
    if prior is None:
        return None
    # Size prior: optical depth from the apparent height, along the ray through the box centre.
    # A box cut off at the bottom is cut in height too (the range would come out too long):
    # its width, when neither side is cut, gives the depth instead.
    side_cut = x1 <= truncation_margin_px or x2 >= calib.width - truncation_margin_px
    if bottom_cut and not side_cut and prior.rear_width_m is not None:
        depth = calib.fx * prior.rear_width_m / (x2 - x1)
        method = "width"
    else:
        depth = calib.fy * prior.height_m / h_px
        method = "size"
    v_c = 0.5 * (y1 + y2)
    ray_opt = np.array([(u - calib.cx) / calib.fx, (v_c - calib.cy) / calib.fy, 1.0])
    centre = calib.mount_m + calib.rotation @ (OPT_FROM_BODY.T @ (ray_opt * depth))
    contact = np.array([centre[0], centre[1], 0.0])
    return _finish(calib, contact, method, consistent, prior.height_m, prior)


def _beside(box: tuple[float, float, float, float] | np.ndarray, calib: Calibration,
            prior: SizePrior | None, margin_px: float, band_px: float,
            ) -> tuple[float, float, tuple[float, float], float] | None:
    """Centre (x, y), near-front corner and weight of a vehicle whose box a side cuts.

    Such a vehicle is ahead-beside the camera, and the bottom-centre contact point of its box
    is wrong: the box's centre column is pulled towards the image centre by the cut, so its
    lateral position comes out 0.3-0.8 m towards the ego, and once the vehicle is beside, its
    range stays near the edge ray's whatever its place. The box's inner edge is the vehicle's
    near front corner; its bottom row is the nearest visible point of its near side. Two cases,
    one of which holds:

    - **rear corner in view**: the bottom row is the near rear corner, so its ground depth is
      the rear's x, the front is a class length farther, and the inner edge's ray there gives
      the near side's lateral place;
    - **rear corner cut off**: the bottom row at the cut edge is a point of the near side's
      ground line (its lateral place), and the inner edge's ray meets that line at the front.

    Each case read where the other holds puts the vehicle farther than it is, so the nearer of
    the two is the one (they agree where the rear corner leaves the image, so the estimate
    moves smoothly).

    The weight, for blending with the ground estimate, is 1 for a box within ``margin_px`` of
    the side and falls to 0 at ``band_px``: a box that nears the side has its rear corner in
    view, and the two estimates differ by up to 0.3 m across (the ground one's bias), which a
    switch in one frame would turn into metres per second of sideways motion. ``None`` when
    this does not apply (not a vehicle class, no side near or both, the bottom cut, or rays
    that miss).
    """
    x1, _, x2, y2 = (float(v) for v in np.asarray(box).reshape(4))
    if prior is None or prior.rear_width_m is None or y2 >= calib.height - margin_px:
        return None
    d_right, d_left = calib.width - x2, x1
    if min(d_right, d_left) >= band_px or max(d_right, d_left) < band_px:
        return None
    right = d_right < d_left
    weight = min(max((band_px - min(d_right, d_left)) / max(band_px - margin_px, 1e-6), 0.0), 1.0)
    edge_u, inner_u = (x2, x1) if right else (x1, x2)
    ray = calib.pixel_ray(inner_u, y2)
    half_w = 0.5 * prior.rear_width_m
    candidates = []
    near = calib.pixel_to_ground(edge_u, y2) if weight >= 1.0 else None
    if near is not None and abs(float(ray[1])) > 1e-6:  # rear corner cut off
        t = (near[1] - calib.mount_y_m) / float(ray[1])
        if t > 0.0:
            candidates.append((calib.mount_x_m + t * float(ray[0]), near[1]))
    rear = calib.pixel_to_ground(inner_u, y2)
    if rear is not None and float(ray[0]) > 1e-6:  # rear corner in view
        front_x = rear[0] + prior.depth_m
        t = (front_x - calib.mount_x_m) / float(ray[0])
        candidates.append((front_x, calib.mount_y_m + t * float(ray[1])))
    if not candidates:
        return None
    front_x, side_y = min(candidates)
    centre_y = side_y - half_w if right else side_y + half_w
    return front_x - 0.5 * prior.depth_m, centre_y, (front_x, side_y), weight


def _finish(
    calib: Calibration,
    contact: np.ndarray,
    method: str,
    consistent: bool | None,
    implied_height_m: float,
    prior: SizePrior | None,
) -> RangeEstimate:
    sight = contact[:2] - calib.mount_m[:2]
    norm = float(np.linalg.norm(sight))
    half_depth = 0.5 * prior.depth_m if prior is not None else 0.0
    centre_xy = contact[:2] + (sight / norm * half_depth if norm > 1e-9 else 0.0)
    z = 0.5 * (prior.height_m if prior is not None else implied_height_m)
    return RangeEstimate(
        contact_m=(float(contact[0]), float(contact[1])),
        position_m=(float(centre_xy[0]), float(centre_xy[1]), float(z)),
        range_m=float(math.hypot(contact[0], contact[1])),
        method=method,
        consistent=consistent,
        implied_height_m=float(implied_height_m),
    )


def time_to_collision(
    position_m: tuple[float, float] | np.ndarray,
    velocity_mps: tuple[float, float] | np.ndarray,
    *,
    min_closing_mps: float = 0.1,
) -> float | None:
    """TTC [s] = range / closing speed for a relative position and velocity in the ego frame.

    Closing speed is the rate at which the range shrinks, −(p·v)/|p|. ``None`` when the object
    is not closing faster than ``min_closing_mps`` (receding, crossing or static relative).
    """
    p = np.asarray(position_m, dtype=np.float64)[:2]
    v = np.asarray(velocity_mps, dtype=np.float64)[:2]
    rng = float(np.linalg.norm(p))
    if rng < 1e-6:
        return 0.0
    closing = -float(p @ v) / rng
    if closing <= min_closing_mps:
        return None
    return rng / closing
