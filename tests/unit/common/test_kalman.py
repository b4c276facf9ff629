"""The kinematic Kalman filters learn constant-velocity and braking motion."""

from __future__ import annotations

import numpy as np
import pytest

from common.kalman import ConstantVelocityKalman, KinematicKalman


def test_kalman_learns_a_constant_velocity() -> None:
    rng = np.random.default_rng(0)
    kf = ConstantVelocityKalman(np.array([0.0, 0.0]), position_std=1.0, velocity_std=10.0)
    for k in range(1, 60):
        t = 0.1 * k
        kf.predict(0.1, 0.5)
        kf.update(np.array([3.0 * t, -1.0 * t]) + rng.normal(0, 0.2, 2), 0.2)
    np.testing.assert_allclose(kf.velocity, [3.0, -1.0], atol=0.2)
    np.testing.assert_allclose(kf.P, kf.P.T)
    assert np.all(np.linalg.eigvalsh(kf.P) > 0)
    np.testing.assert_array_equal(kf.acceleration, [0.0, 0.0])


def test_kalman_learns_a_braking_object() -> None:
    """Constant acceleration: a car braking at 2 m/s² from 14 m/s is seen braking."""
    rng = np.random.default_rng(1)
    kf = KinematicKalman(np.array([20.0]), position_std=0.3, velocity_std=15.0, accel_std=3.0,
                         order=3)
    for k in range(1, 41):
        t = 0.05 * k
        kf.predict(0.05, 2.0)
        kf.update(np.array([20.0 + 14.0 * t - t * t]) + rng.normal(0, 0.05, 1), 0.05)
    np.testing.assert_allclose(kf.velocity, [14.0 - 2.0 * 2.0], atol=0.5)
    np.testing.assert_allclose(kf.acceleration, [-2.0], atol=0.5)
    assert np.all(np.linalg.eigvalsh(kf.P) > 0)
    with pytest.raises(ValueError, match="order"):
        KinematicKalman(np.zeros(1), position_std=1.0, velocity_std=1.0, order=4)
