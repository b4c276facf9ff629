"""The object classes: their ids are the detector's contract, and every spelling agrees."""

from __future__ import annotations

from typing import get_args

import pytest

from common.classes import (
    CLASS_IDS,
    CLASS_NAMES,
    NUM_CLASSES,
    ObjectClass,
    ObjectClassName,
    as_object_class,
)
from services.messages import ObjectClass as WireObjectClass
from simulators.scenario import ActorClass


def test_class_order_is_the_contract() -> None:
    assert CLASS_NAMES == ("background", "car", "truck", "pedestrian", "cyclist")
    assert CLASS_IDS == {"car": 1, "truck": 2, "pedestrian": 3, "cyclist": 4}
    assert NUM_CLASSES == 5
    assert [type(i) for i in CLASS_IDS.values()] == [int] * 4  # plain ints: they get saved


def test_every_spelling_of_the_classes_agrees() -> None:
    """The scenario literal, the wire's names and the scenario's actor classes follow the enum."""
    names = tuple(c.label for c in ObjectClass)
    assert get_args(ObjectClassName) == names
    assert tuple(c.value for c in WireObjectClass) == names
    assert get_args(ActorClass) == (*names, "parked_car")


@pytest.mark.parametrize(("value", "expected"), [
    (1, ObjectClass.CAR), (4, ObjectClass.CYCLIST), (ObjectClass.TRUCK, ObjectClass.TRUCK),
    ("pedestrian", ObjectClass.PEDESTRIAN), (" Truck ", ObjectClass.TRUCK),
    (WireObjectClass.CYCLIST, ObjectClass.CYCLIST),
    # Unknown ids and names count as cars: a planner never drops an object for its class.
    (0, ObjectClass.CAR), (99, ObjectClass.CAR), ("bus", ObjectClass.CAR), ("", ObjectClass.CAR),
])
def test_as_object_class(value: int | str, expected: ObjectClass) -> None:
    assert as_object_class(value) is expected
