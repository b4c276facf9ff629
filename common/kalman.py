"""Kinematic Kalman filters in n dimensions: constant velocity and constant acceleration.

Used by perception's image-space tracker (box centre and size, constant velocity) and its
ego-frame motion filter (position, constant acceleration, so a braking car ahead is seen
braking), and by planning's world-frame motion of objects over the ground.
State ``[p_1..p_n, v_1..v_n]`` (constant velocity, white-noise acceleration) or
``[p, v, a]`` per axis block (constant acceleration, white-noise jerk); time in seconds,
units those of the measurements; only positions are measured.
"""

from __future__ import annotations

import math

import numpy as np


class KinematicKalman:
    """Kalman filter whose state is position and its first ``order - 1`` derivatives.

    Args:
        position: first measurement ``(n,)``.
        position_std: its standard deviation, scalar or ``(n,)``.
        velocity_std: prior standard deviation of the unknown initial velocity.
        accel_std: prior standard deviation of the unknown initial acceleration
            (``order == 3`` only).
        order: 2 (constant velocity) or 3 (constant acceleration).
    """

    def __init__(
        self,
        position: np.ndarray,
        *,
        position_std: float | np.ndarray,
        velocity_std: float | np.ndarray,
        accel_std: float | np.ndarray = 0.0,
        order: int = 2,
    ) -> None:
        if order not in (2, 3):
            raise ValueError(f"order must be 2 (constant velocity) or 3 (constant acceleration), "
                             f"not {order!r}")
        z = np.asarray(position, dtype=np.float64).reshape(-1)
        n = z.shape[0]
        self.dim = n
        self.order = order
        self.x = np.concatenate([z, np.zeros((order - 1) * n)])
        stds = [position_std, velocity_std, accel_std][:order]
        var = [np.broadcast_to(np.square(s), (n,)) for s in stds]
        self.P = np.diag(np.concatenate(var).astype(np.float64))
        self._H = np.hstack([np.eye(n), np.zeros((n, (order - 1) * n))])

    @property
    def position(self) -> np.ndarray:
        """Current position estimate ``(n,)``."""
        return self.x[: self.dim].copy()

    @property
    def velocity(self) -> np.ndarray:
        """Current velocity estimate ``(n,)`` [units / s]."""
        return self.x[self.dim : 2 * self.dim].copy()

    @property
    def acceleration(self) -> np.ndarray:
        """Current acceleration estimate ``(n,)`` [units / s²]; zeros for constant velocity."""
        if self.order < 3:
            return np.zeros(self.dim)
        return self.x[2 * self.dim :].copy()

    def predict(self, dt_s: float, noise_std: float | np.ndarray) -> None:
        """Advance by ``dt_s`` seconds.

        ``noise_std`` is the process noise: the white acceleration [units / s²] of the
        constant-velocity model, the white jerk [units / s³] of the constant-acceleration one.
        """
        if dt_s <= 0.0:
            return
        n, k = self.dim, self.order
        eye = np.eye(n)
        # Taylor blocks: F[i][j] = dt^(j-i) / (j-i)! for j >= i.
        F = np.block([[eye * (dt_s ** (j - i) / math.factorial(j - i)) if j >= i
                       else np.zeros((n, n)) for j in range(k)] for i in range(k)])
        # Discrete white noise on the highest derivative: Q = G Gᵀ σ², with
        # G = [dt^k / k!, …, dt] per axis (k = order).
        g = [dt_s ** (k - i) / math.factorial(k - i) for i in range(k)]
        q = np.diag(np.broadcast_to(np.square(noise_std), (n,)))
        Q = np.block([[q * (g[i] * g[j]) for j in range(k)] for i in range(k)])
        self.x = F @ self.x
        self.P = F @ self.P @ F.T + Q

    def update(
        self, z: np.ndarray, meas_std: float | np.ndarray = 1.0, *, meas_cov: np.ndarray | None = None
    ) -> None:
        """Fuse a position measurement ``(n,)``.

        Its noise is ``meas_std`` (scalar or per axis) or, when given, the full ``(n, n)``
        covariance ``meas_cov``.
        """
        z = np.asarray(z, dtype=np.float64).reshape(-1)
        if meas_cov is not None:
            R = np.asarray(meas_cov, dtype=np.float64).reshape(self.dim, self.dim)
        else:
            R = np.diag(np.broadcast_to(np.square(meas_std), (self.dim,)).astype(np.float64))
        H = self._H
        S = H @ self.P @ H.T + R
        K = np.linalg.solve(S, H @ self.P).T  # P Hᵀ S⁻¹, with S symmetric
        self.x = self.x + K @ (z - H @ self.x)
        # Joseph form keeps P symmetric positive definite under rounding.
        I_KH = np.eye(self.order * self.dim) - K @ H
        self.P = I_KH @ self.P @ I_KH.T + K @ R @ K.T


class ConstantVelocityKalman(KinematicKalman):
    """Kalman filter with state ``[position (n), velocity (n)]`` (white-noise acceleration)."""

    def __init__(
        self,
        position: np.ndarray,
        *,
        position_std: float | np.ndarray,
        velocity_std: float | np.ndarray,
    ) -> None:
        super().__init__(position, position_std=position_std, velocity_std=velocity_std, order=2)
