"""The camera calibration is one type: the wire's header part and ranging's geometry."""

from __future__ import annotations

import pydantic
import pytest

from common.calibration import Calibration
from services.messages import Calibration as WireCalibration
from services.messages import FrameMeta

FRONT = Calibration(fx=640.0, fy=640.0, cx=320.0, cy=180.0, width=640, height=360,
                    mount_x_m=1.5, mount_y_m=0.0, mount_z_m=1.4, pitch_rad=0.02)


def test_validation_ignores_unknown_keys() -> None:
    calib = Calibration.model_validate({**FRONT.__dict__, "camera_id": "front"})
    assert calib == FRONT


def test_the_frame_header_carries_the_same_type() -> None:
    assert WireCalibration is Calibration
    assert FrameMeta.model_fields["calibration"].annotation is Calibration


def test_a_bad_calibration_is_refused_naming_the_field() -> None:
    with pytest.raises(pydantic.ValidationError, match="fx"):
        Calibration(fx=0.0, fy=640.0, cx=320.0, cy=180.0, width=640, height=360)
