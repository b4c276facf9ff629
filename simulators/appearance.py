"""Actor appearance: body style, colours and size, fixed by the scenario or drawn from its seed."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from simulators.scenario import BODIES, ActorSpec

BGR = tuple[int, int, int]

PALETTE: dict[str, BGR] = {
    "white": (235, 235, 232),
    "silver": (192, 190, 186),
    "grey": (120, 120, 118),
    "black": (28, 28, 30),
    "red": (40, 38, 190),
    "dark_red": (35, 30, 120),
    "blue": (170, 90, 30),
    "dark_blue": (90, 45, 20),
    "green": (60, 110, 40),
    "yellow": (40, 200, 230),
    "orange": (30, 120, 235),
    "brown": (40, 70, 110),
    "beige": (150, 185, 205),
}
# Rough shares of car paint colours on European roads.
_CAR_COLOURS = ("white", "black", "grey", "silver", "blue", "red", "dark_blue", "green",
                "brown", "beige", "yellow", "orange", "dark_red")
_CAR_WEIGHTS = np.array([24, 19, 17, 12, 9, 8, 3, 2, 2, 1.5, 1, 1, 1.5])
_CLOTHES: tuple[BGR, ...] = ((40, 40, 150), (150, 80, 30), (60, 60, 60), (30, 140, 200),
                             (200, 200, 200), (40, 110, 40), (110, 50, 110), (30, 30, 30),
                             (40, 170, 230), (120, 120, 160))
_TROUSERS: tuple[BGR, ...] = ((90, 60, 40), (40, 40, 40), (110, 100, 90), (60, 50, 30),
                              (150, 140, 130))
_SKIN: tuple[BGR, ...] = ((150, 180, 225), (120, 160, 210), (90, 130, 180), (60, 90, 130))
_HAIR: tuple[BGR, ...] = ((25, 25, 30), (40, 60, 90), (60, 110, 160), (160, 160, 160))

# length, width, height [m] of each body style at size "medium"
DIMENSIONS: dict[str, tuple[float, float, float]] = {
    "sedan": (4.7, 1.82, 1.45),
    "hatch": (4.1, 1.78, 1.50),
    "suv": (4.7, 1.92, 1.72),
    "van": (5.2, 2.0, 2.15),
    "box": (8.0, 2.5, 3.6),
    "lorry": (11.5, 2.55, 3.9),
    "adult": (0.45, 0.6, 1.75),
    "child": (0.35, 0.45, 1.2),
    "cyclist": (1.8, 0.65, 1.75),
}
SIZE_SCALE = {"small": 0.93, "medium": 1.0, "large": 1.07}
CLASS_OF = {"parked_car": "car"}  # classes reported under another name


@dataclass(frozen=True)
class Appearance:
    """Everything the renderer and the collision box need about how an actor looks."""

    actor_class: str  # scenario class (parked_car stays parked_car here)
    body: str
    colour: BGR  # paint, shirt or jersey
    secondary: BGR  # truck box, trousers, bicycle frame
    skin: BGR
    hair: BGR
    length_m: float
    width_m: float
    height_m: float

    @property
    def gt_class(self) -> str:
        """The class reported in ground truth (car, truck, pedestrian, cyclist)."""
        return CLASS_OF.get(self.actor_class, self.actor_class)


def parse_colour(text: str) -> BGR:
    """A palette name or `#rrggbb` as BGR; ValueError otherwise."""
    if text in PALETTE:
        return PALETTE[text]
    if len(text) == 7 and text.startswith("#"):
        r, g, b = (int(text[i : i + 2], 16) for i in (1, 3, 5))
        return (b, g, r)
    raise ValueError(f"unknown colour {text!r}; use one of {sorted(PALETTE)} or #rrggbb")


def resolve_appearance(spec: ActorSpec, rng: np.random.Generator) -> Appearance:
    """Fill the unset appearance fields of `spec` from `rng`.

    The same number of draws is taken whatever is set, so fixing one field leaves the others
    as they were.
    """
    bodies = BODIES[spec.cls]
    body_draw = bodies[int(rng.integers(len(bodies)))]
    if spec.cls == "pedestrian":  # mostly adults
        body_draw = "child" if rng.random() < 0.25 else "adult"
    else:
        rng.random()
    car_colour = _CAR_COLOURS[int(rng.choice(len(_CAR_COLOURS), p=_CAR_WEIGHTS / _CAR_WEIGHTS.sum()))]
    clothes = _CLOTHES[int(rng.integers(len(_CLOTHES)))]
    trousers = _TROUSERS[int(rng.integers(len(_TROUSERS)))]
    skin = _SKIN[int(rng.integers(len(_SKIN)))]
    hair = _HAIR[int(rng.integers(len(_HAIR)))]
    size_draw = ("small", "medium", "large")[int(rng.integers(3))]
    truck_box = PALETTE[("white", "silver", "white", "blue", "red")[int(rng.integers(5))]]
    frame = PALETTE[("red", "black", "blue", "silver", "green")[int(rng.integers(5))]]

    app = spec.appearance
    body = app.body or body_draw
    size = app.size or size_draw
    if spec.cls in ("car", "parked_car"):
        colour, secondary = PALETTE[car_colour], PALETTE["black"]
    elif spec.cls == "truck":
        colour, secondary = PALETTE[car_colour], truck_box
    elif spec.cls == "cyclist":
        colour, secondary = clothes, frame
    else:
        colour, secondary = clothes, trousers
    if app.colour is not None:
        colour = parse_colour(app.colour)
    dims_key = "cyclist" if spec.cls == "cyclist" else body
    length, width, height = DIMENSIONS[dims_key]
    scale = SIZE_SCALE[size]
    if spec.cls == "pedestrian":  # people vary in height far more than in girth
        length, width, height = length * (1 + (scale - 1) / 2), width * (1 + (scale - 1) / 2), height * scale
    else:
        length, width, height = length * scale, width * min(scale, 1.03), height * scale
    return Appearance(
        actor_class=spec.cls,
        body=body,
        colour=colour,
        secondary=secondary,
        skin=skin,
        hair=hair,
        length_m=length,
        width_m=width,
        height_m=height,
    )
