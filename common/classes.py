"""The object classes, defined once: car, truck, pedestrian and cyclist.

The detector numbers them from 1 (0 is background, which is never reported)::

    1 car, 2 truck, 3 pedestrian, 4 cyclist

Everything else derives from :class:`ObjectClass`: the detector's class-name table
(:data:`CLASS_NAMES`, index = id), the name → id map (:data:`CLASS_IDS`) and the scenario
files' literal (:data:`ObjectClassName`). The wire spells a class by its name
(``services.messages.ObjectClass``); unit tests check that these lists agree.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Literal


class ObjectClass(IntEnum):
    """Detector class ids (1-based, 0 = background)."""

    CAR = 1
    TRUCK = 2
    PEDESTRIAN = 3
    CYCLIST = 4

    @property
    def label(self) -> str:
        """The class's name as files and the wire spell it (``"car"``)."""
        return self.name.lower()


# A type cannot be derived from the enum, so the names are spelled out again here; a unit test
# keeps the two in step.
ObjectClassName = Literal["car", "truck", "pedestrian", "cyclist"]
"""The class names as a type, for schemas that spell classes by name (scenario files)."""

CLASS_NAMES: tuple[str, ...] = ("background", *(c.label for c in ObjectClass))
"""Index = class id; 0 is background and never reported."""

NUM_CLASSES = len(CLASS_NAMES)  # including background, as torchvision counts them

CLASS_IDS: dict[str, int] = {c.label: int(c) for c in ObjectClass}
"""Class name → detector id (plain ints, so they pickle and serialise without this module)."""


def as_object_class(value: int | str) -> ObjectClass:
    """The class for a detector id (``3``) or a name (``"pedestrian"``, any case).

    Unknown ids and names are treated as cars, the common obstacle: a planner must not drop an
    object because its class is new to it.
    """
    if isinstance(value, str):
        return ObjectClass.__members__.get(value.strip().upper(), ObjectClass.CAR)
    try:
        return ObjectClass(int(value))
    except ValueError:
        return ObjectClass.CAR
