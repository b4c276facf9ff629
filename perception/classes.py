"""Class maps from foreign detectors onto our object classes (``common.classes``).

A *class map* turns the class ids of a foreign model (for example a torchvision model trained on
COCO) into ours: ``{foreign_id: our_id}``. Foreign classes missing from the map are dropped.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from common.classes import CLASS_IDS, NUM_CLASSES

# COCO category ids as torchvision's COCO weights number them (91-entry list with gaps).
# A bus is a large vehicle to plan around, so it ranks as a truck; a motorcycle with its rider
# behaves like a cyclist. COCO reports a cyclist as person + bicycle: both are kept, which
# yields a pedestrian and a cyclist box for one rider (a known limit of foreign models).
COCO_TO_ROADSTREAM: dict[int, int] = {
    1: CLASS_IDS["pedestrian"],  # person
    2: CLASS_IDS["cyclist"],  # bicycle
    3: CLASS_IDS["car"],  # car
    4: CLASS_IDS["cyclist"],  # motorcycle
    6: CLASS_IDS["truck"],  # bus
    8: CLASS_IDS["truck"],  # truck
}


class ModelLoadError(RuntimeError):
    """A model, checkpoint or class map could not be loaded; the message names the file."""


class ClassMapError(ModelLoadError):
    """A class map is missing, unreadable, or maps to ids that are not ours."""


def _as_int(value: object) -> int | None:
    """An int, or a string of digits (JSON keys are strings); anything else (bool, float) → None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value.strip())
    return None


def _our_id(value: object, where: str) -> int:
    our = _as_int(value)
    if our is None and isinstance(value, str):
        name = value.strip().lower()
        if name not in CLASS_IDS:
            raise ClassMapError(
                f"{where}: unknown class name {value!r}; expected one of {sorted(CLASS_IDS)}"
            )
        return CLASS_IDS[name]
    if our is None:
        raise ClassMapError(f"{where}: class {value!r} is not an id or a name")
    if our not in CLASS_IDS.values():
        raise ClassMapError(
            f"{where}: our class id {value!r} is out of range; expected 1..{NUM_CLASSES - 1}"
        )
    return our


def _foreign_id(key: object, where: str) -> int:
    foreign = _as_int(key)
    if foreign is None:
        raise ClassMapError(f"{where}: foreign class id {key!r} is not an integer")
    if foreign < 1:
        raise ClassMapError(f"{where}: foreign class id {key!r} must be >= 1 (0 is background)")
    return foreign


def parse_class_map(mapping: Mapping[Any, Any], *, source: str = "class map") -> dict[int, int]:
    """Validate ``{foreign_id: our class id or name}`` and return ``{foreign_id: our_id}``.

    Keys may be ints or digit strings (JSON keys are strings); values our ids 1..4 or the names
    ``car``/``truck``/``pedestrian``/``cyclist``. An optional top-level ``map`` key is unwrapped
    so a file may carry other fields (``{"source": "coco", "map": {...}}``). Raises
    ``ClassMapError`` naming ``source`` on any bad entry or an empty map.
    """
    inner = mapping.get("map") if "map" in mapping else mapping
    if not isinstance(inner, Mapping):
        raise ClassMapError(f"{source}: 'map' must be a mapping of foreign id to our class")
    result: dict[int, int] = {}
    for key, value in inner.items():
        where = f"{source}: entry {key!r}"
        result[_foreign_id(key, where)] = _our_id(value, where)
    if not result:
        raise ClassMapError(f"{source}: the class map is empty")
    return result


def load_class_map(source: Mapping[Any, Any] | str | Path) -> dict[int, int]:
    """Load a class map from a dict, or a ``.yaml``/``.yml``/``.json`` file.

    Returns ``{foreign_id: our_id}``. Raises ``ClassMapError`` (a ``ModelLoadError``) naming the
    file when it is missing, unparsable, not a mapping, or holds ids that are not ours.
    """
    if isinstance(source, Mapping):
        return parse_class_map(source)
    path = Path(source)
    if not path.is_file():
        raise ClassMapError(f"class map file {path} does not exist")
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (OSError, UnicodeDecodeError, ValueError, yaml.YAMLError) as exc:
        raise ClassMapError(f"class map file {path} could not be parsed: {exc}") from exc
    if not isinstance(data, Mapping):
        raise ClassMapError(f"class map file {path} does not hold a mapping")
    return parse_class_map(data, source=f"class map file {path}")
