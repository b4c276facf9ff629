"""Mesh builders per actor kind: cars (sedan, hatch, SUV, van), trucks, pedestrians, cyclists."""

from __future__ import annotations

import math

from simulators.appearance import Appearance
from simulators.meshes import (
    BRAKE,
    DARK,
    GLASS,
    HEAD,
    IND_LEFT,
    IND_RIGHT,
    PLATE,
    REFLECTOR,
    TAIL,
    Mesh,
    MeshBuilder,
    octagon,
)

BGR = tuple[int, int, int]
GLASS_C: BGR = (62, 52, 46)
PLASTIC: BGR = (48, 48, 50)
TYRE: BGR = (26, 26, 28)
RIM: BGR = (150, 150, 152)
LAMP_OFF: BGR = (40, 30, 110)
HEADLAMP: BGR = (205, 210, 210)
PLATE_C: BGR = (215, 222, 222)
AMBER_OFF: BGR = (50, 95, 150)

# body: clearance/H, belt/H, cabin bottom (rear, front)/L, cabin top (rear, front)/L, wheel r/H,
#       axle |x|/L
_CAR_SHAPES: dict[str, tuple[float, float, float, float, float, float, float, float]] = {
    "sedan": (0.19, 0.60, -0.30, 0.17, -0.19, 0.02, 0.22, 0.30),
    "hatch": (0.19, 0.58, -0.46, 0.18, -0.41, -0.02, 0.21, 0.31),
    "suv": (0.22, 0.58, -0.47, 0.19, -0.45, 0.02, 0.215, 0.30),
    "van": (0.15, 0.45, -0.50, 0.33, -0.50, 0.22, 0.16, 0.32),
}


def _wheel(b: MeshBuilder, xc: float, r: float, y_out: float, width: float, side: float) -> None:
    """A wheel as a dark block with an octagonal tyre and rim on its outer side."""
    y_in = y_out - side * width
    ys = (min(y_in, y_out), max(y_in, y_out))
    b.box((xc - r * 0.92, xc + r * 0.92), ys, (0.0, 2 * r * 0.96), TYRE, DARK,
          skip=("left",) if side > 0 else ("right",))
    y_face = y_out + side * 0.004
    tyre = b.face(octagon(xc, r, r, y_face, side), TYRE, DARK)
    b.face(octagon(xc, r, r * 0.58, y_face + side * 0.01, side), RIM, parent=tyre)


def _arched_side(b: MeshBuilder, x0: float, x1: float, z0: float, z1: float, y: float,
                 wheels: list[tuple[float, float]], colour: BGR, side: float) -> int:
    """A body side with wheel arches cut out of its bottom edge."""
    pts = [(x0, z0)]
    for xc, r in sorted(wheels):
        top = min(2 * r + 0.04, z1 - 0.05)
        pts += [(xc - r - 0.07, z0), (xc - r * 0.8, top), (xc + r * 0.8, top), (xc + r + 0.07, z0)]
    pts += [(x1, z0), (x1, z1), (x0, z1)]
    poly = [(x, y, z) for x, z in pts]
    return b.face(poly if side < 0 else poly[::-1], colour)


def build_car(app: Appearance) -> Mesh:
    """Sedan, hatch, SUV or van: wheels, arched lower body with lamps, glazed cabin."""
    L, W, H = app.length_m, app.width_m, app.height_m
    clear, belt, cb_r, cb_f, ct_r, ct_f, wr, axle = _CAR_SHAPES[app.body]
    c = app.colour
    z_clear, z_belt, r = clear * H, belt * H, wr * H
    b = MeshBuilder()
    b.part(group=0, layer=0)
    wheels = [(axle * L, r), (-axle * L, r)]
    for xc, _ in wheels:
        for side in (1.0, -1.0):
            _wheel(b, xc, r, side * (W / 2 - 0.02), 0.22, side)
    b.part(group=0, layer=1)
    faces = b.frustum((-L / 2, L / 2, -W / 2, W / 2), (-L / 2 + 0.04, L / 2 - 0.06, -W / 2, W / 2),
                      z_clear, z_belt, {"all": c, "bottom": PLASTIC}, skip=("left", "right"))
    for side in (-1.0, 1.0):
        _arched_side(b, -L / 2, L / 2, z_clear, z_belt, side * W / 2, wheels, c, side)
    front, back = faces["front"], faces["back"]
    b.decal(front, (0.0, 1.0), (0.0, 0.28), PLASTIC)
    b.decal(front, (0.33, 0.67), (0.4, 0.72), PLASTIC)
    b.decal(front, (0.04, 0.24), (0.55, 0.85), HEADLAMP, HEAD)
    b.decal(front, (0.76, 0.96), (0.55, 0.85), HEADLAMP, HEAD)
    b.decal(front, (0.4, 0.6), (0.08, 0.24), PLATE_C, PLATE)
    b.decal(back, (0.0, 1.0), (0.0, 0.3), PLASTIC)
    lamp_v = (0.3, 0.95) if app.body == "van" else (0.58, 0.9)
    lamp_w = 0.09 if app.body == "van" else 0.19
    b.decal(back, (0.03, 0.03 + lamp_w), lamp_v, LAMP_OFF, TAIL)  # car's left
    b.decal(back, (0.97 - lamp_w, 0.97), lamp_v, LAMP_OFF, TAIL)
    iv = (lamp_v[0], lamp_v[0] + 0.25 * (lamp_v[1] - lamp_v[0]))
    b.decal(back, (0.03, 0.03 + lamp_w), iv, AMBER_OFF, IND_LEFT)
    b.decal(back, (0.97 - lamp_w, 0.97), iv, AMBER_OFF, IND_RIGHT)
    b.decal(back, (0.39, 0.61), (0.34, 0.54), PLATE_C, PLATE)

    b.part(group=0, layer=2)
    inset = 0.05 if app.body == "van" else 0.08
    top_inset = 0.06 if app.body == "van" else 0.2
    cab = b.frustum((cb_r * L, cb_f * L, -W / 2 + inset, W / 2 - inset),
                    (ct_r * L, ct_f * L, -W / 2 + top_inset, W / 2 - top_inset),
                    z_belt, H, {"all": c})
    b.decal(cab["front"], (0.05, 0.95), (0.06, 0.93), GLASS_C, GLASS)
    if app.body == "van":
        b.decal(cab["back"], (0.08, 0.46), (0.55, 0.85), GLASS_C, GLASS)
        b.decal(cab["back"], (0.54, 0.92), (0.55, 0.85), GLASS_C, GLASS)
        b.decal(cab["back"], (0.497, 0.503), (0.02, 0.98), PLASTIC)
        b.decal(cab["right"], (0.8, 0.97), (0.45, 0.9), GLASS_C, GLASS)
        b.decal(cab["left"], (0.03, 0.2), (0.45, 0.9), GLASS_C, GLASS)
        b.decal(cab["back"], (0.42, 0.58), (0.93, 0.98), LAMP_OFF, BRAKE)
    else:
        b.decal(cab["back"], (0.08, 0.92), (0.1, 0.86), GLASS_C, GLASS)
        b.decal(cab["back"], (0.4, 0.6), (0.89, 0.96), LAMP_OFF, BRAKE)
        for name, spans in (("right", ((0.06, 0.47), (0.52, 0.93))),
                            ("left", ((0.07, 0.48), (0.53, 0.94)))):
            for span in spans:
                b.decal(cab[name], span, (0.1, 0.88), GLASS_C, GLASS)
    return b.build()


def build_truck(app: Appearance) -> Mesh:
    """A rigid truck: cab with windscreen and lamps, cargo box, chassis, under-run bar."""
    L, W, H = app.length_m, app.width_m, app.height_m
    cab_len, r = 2.2, 0.5
    x_cab = L / 2 - cab_len
    b = MeshBuilder()
    b.part(group=0, layer=0)
    for side in (1.0, -1.0):
        _wheel(b, L / 2 - 1.3, r, side * (W / 2 - 0.06), 0.35, side)
    b.part(group=0, layer=1)
    b.box((L / 2 - 0.3, L / 2), (-W / 2 + 0.05, W / 2 - 0.05), (0.35, 0.8), PLASTIC)
    b.part(group=0, layer=2)
    cab = b.frustum((x_cab, L / 2, -W / 2 + 0.04, W / 2 - 0.04),
                    (x_cab, L / 2 - 0.1, -W / 2 + 0.06, W / 2 - 0.06), 0.8, 0.8 * H,
                    {"all": app.colour})
    b.decal(cab["front"], (0.05, 0.95), (0.52, 0.93), GLASS_C, GLASS)
    b.decal(cab["front"], (0.22, 0.78), (0.12, 0.42), PLASTIC)
    b.decal(cab["front"], (0.03, 0.16), (0.05, 0.17), HEADLAMP, HEAD)
    b.decal(cab["front"], (0.84, 0.97), (0.05, 0.17), HEADLAMP, HEAD)
    b.decal(cab["right"], (0.5, 0.95), (0.55, 0.9), GLASS_C, GLASS)
    b.decal(cab["left"], (0.05, 0.5), (0.55, 0.9), GLASS_C, GLASS)

    axles = [-L / 2 + 1.7] if app.body == "box" else [-L / 2 + 1.8, -L / 2 + 3.1]
    b.part(group=1, layer=0)
    for xc in axles:
        for side in (1.0, -1.0):
            _wheel(b, xc, r, side * (W / 2 - 0.06), 0.55, side)
    b.part(group=1, layer=1)
    b.box((-L / 2 + 0.3, L / 2 - 0.4), (-0.45, 0.45), (0.55, 1.1), PLASTIC)
    b.part(group=1, layer=2)
    bar = b.box((-L / 2, -L / 2 + 0.12), (-W / 2 + 0.15, W / 2 - 0.15), (0.42, 0.62), PLASTIC)
    b.decal(bar["back"], (0.01, 0.13), (0.1, 0.9), LAMP_OFF, TAIL)
    b.decal(bar["back"], (0.87, 0.99), (0.1, 0.9), LAMP_OFF, TAIL)
    b.decal(bar["back"], (0.13, 0.19), (0.1, 0.9), AMBER_OFF, IND_LEFT)
    b.decal(bar["back"], (0.81, 0.87), (0.1, 0.9), AMBER_OFF, IND_RIGHT)
    b.decal(bar["back"], (0.42, 0.58), (0.05, 0.95), PLATE_C, PLATE)
    b.part(group=1, layer=3)
    box = b.box((-L / 2 + 0.05, x_cab - 0.15), (-W / 2, W / 2), (1.1, H), app.secondary)
    b.decal(box["back"], (0.497, 0.503), (0.02, 0.98), PLASTIC)
    b.decal(box["back"], (0.03, 0.97), (0.02, 0.05), PLASTIC)
    for name in ("left", "right"):
        b.decal(box[name], (0.06, 0.94), (0.42, 0.55), app.colour)
    return b.build()


def build_pedestrian(app: Appearance) -> Mesh:
    """Legs, torso, arms, neck and head; legs and arms swing with the gait phase."""
    H = app.height_m
    s = H / 1.75
    hs = s * (1.15 if app.body == "child" else 1.0)  # children have larger heads for their size
    hip, shoulder = 0.5 * H, 0.8 * H
    b = MeshBuilder()
    for group, (y, offset) in enumerate(((0.08 * s, 0.0), (-0.08 * s, math.pi))):
        b.part(group=group, swing_amp_rad=0.42, swing_offset_rad=offset, pivot=(0.0, y, hip))
        b.beam((0.0, y, hip), (0.0, y, 0.07), 0.13 * s, 0.15 * s, app.secondary)
        b.box((-0.05 * s, 0.17 * s), (y - 0.055 * s, y + 0.055 * s), (0.0, 0.07), TYRE, DARK)
    b.part(group=2)
    b.box((-0.11 * s, 0.11 * s), (-0.19 * s, 0.19 * s), (hip - 0.03, shoulder), app.colour)
    for group, (y, offset) in enumerate(((0.235 * s, math.pi), (-0.235 * s, 0.0)), start=3):
        b.part(group=group, swing_amp_rad=0.35, swing_offset_rad=offset,
               pivot=(0.0, y, shoulder - 0.02))
        b.beam((0.0, y, shoulder - 0.02), (0.0, y, 0.47 * H), 0.08 * s, 0.09 * s, app.colour)
        b.box((-0.04 * s, 0.04 * s), (y - 0.035 * s, y + 0.035 * s),
              (0.47 * H - 0.09 * s, 0.47 * H), app.skin)
    b.part(group=5)
    b.box((-0.05 * s, 0.05 * s), (-0.05 * s, 0.05 * s), (shoulder, 0.87 * H), app.skin)
    b.frustum((-0.1 * hs, 0.1 * hs, -0.085 * hs, 0.085 * hs), (-0.09 * hs, 0.09 * hs,
              -0.075 * hs, 0.075 * hs), 0.87 * H - 0.02, H,
              {"all": app.skin, "top": app.hair, "back": app.hair})
    return b.build()


def build_cyclist(app: Appearance) -> Mesh:
    """A bicycle (wheel rings and frame as thick lines) with a pedalling rider."""
    s = app.height_m / 1.75
    b = MeshBuilder()
    b.part(group=0)
    for xc in (-0.52 * s, 0.53 * s):
        ring = [(xc + 0.34 * s * math.cos(a), 0.0, 0.34 * s + 0.34 * s * math.sin(a))
                for a in [k * 2 * math.pi / 16 for k in range(17)]]
        b.line(ring, 0.05, TYRE)
    p = {"rh": (-0.52, 0.34), "bb": (0.0, 0.3), "st": (-0.14, 0.82), "ht": (0.42, 0.86),
         "hb": (0.46, 0.68), "fh": (0.53, 0.34), "bar": (0.40, 0.98)}
    pt = {k: (x * s, 0.0, z * s) for k, (x, z) in p.items()}
    for a, c in (("rh", "bb"), ("bb", "st"), ("st", "rh"), ("st", "ht"), ("bb", "hb"),
                 ("hb", "fh"), ("ht", "hb"), ("ht", "bar")):
        b.line([pt[a], pt[c]], 0.035, app.secondary)
    b.line([(0.4 * s, -0.25 * s, 0.98 * s), (0.4 * s, 0.25 * s, 0.98 * s)], 0.03, PLASTIC)
    b.box((-0.24 * s, -0.06 * s), (-0.06 * s, 0.06 * s), (0.84 * s, 0.9 * s), PLASTIC)
    b.box((-0.56 * s, -0.5 * s), (-0.03 * s, 0.03 * s), (0.62 * s, 0.7 * s), LAMP_OFF, TAIL)
    for group, (y, offset) in enumerate(((0.11 * s, 0.0), (-0.11 * s, math.pi)), start=1):
        b.part(group=group, swing_amp_rad=0.3, swing_offset_rad=offset, pivot=(-0.12 * s, y, 0.92 * s))
        b.beam((-0.12 * s, y, 0.92 * s), (0.02 * s, y, 0.3 * s), 0.12 * s, 0.14 * s, PLASTIC)
    b.part(group=3)
    b.beam((-0.12 * s, 0.0, 0.9 * s), (0.2 * s, 0.0, 1.42 * s), 0.36 * s, 0.22 * s, app.colour)
    for group, y in ((4, 0.2 * s), (5, -0.2 * s)):
        b.part(group=group)
        b.beam((0.2 * s, y, 1.38 * s), (0.4 * s, y * 1.2, 0.99 * s), 0.08 * s, 0.09 * s, app.colour)
    b.part(group=6)
    b.box((0.22 * s, 0.42 * s), (-0.09 * s, 0.09 * s), (1.46 * s, 1.64 * s), app.skin)
    b.frustum((0.2 * s, 0.45 * s, -0.11 * s, 0.11 * s), (0.25 * s, 0.4 * s, -0.07 * s, 0.07 * s),
              1.6 * s, 1.75 * s, {"all": app.secondary})
    return b.build()


def build_post() -> Mesh:
    """A roadside delineator post with a black band and an amber reflector facing traffic."""
    b = MeshBuilder()
    b.part(group=0)
    faces = b.box((-0.06, 0.06), (-0.05, 0.05), (0.0, 1.0), (225, 228, 228))
    for name in ("front", "back", "left", "right"):
        b.decal(faces[name], (0.0, 1.0), (0.72, 0.88), (30, 30, 30))
    b.decal(faces["back"], (0.15, 0.85), (0.75, 0.85), (40, 150, 235), REFLECTOR)
    return b.build()


def build_mesh(app: Appearance) -> Mesh:
    """The mesh of an actor from its appearance."""
    cls = app.actor_class
    if cls in ("car", "parked_car"):
        return build_car(app)
    if cls == "truck":
        return build_truck(app)
    if cls == "pedestrian":
        return build_pedestrian(app)
    return build_cyclist(app)
