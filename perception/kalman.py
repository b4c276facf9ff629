"""Constant-velocity Kalman filter in n dimensions (white-noise acceleration model).

Used by the image-space tracker (box centre and size) and by ranging (ego-frame position).
State ``[p_1..p_n, v_1..v_n]``; time in seconds, units those of the measurements.
"""

from __future__ import annotations

import numpy as np


class ConstantVelocityKalman:
    """Kalman filter with state ``[position (n), velocity (n)]``.

    Args:
        position: first measurement ``(n,)``.
        position_std: its standard deviation, scalar or ``(n,)``.
        velocity_std: prior standard deviation of the unknown initial velocity.
    """

    def __init__(
        self,
        position: np.ndarray,
        *,
        position_std: float | np.ndarray,
        velocity_std: float | np.ndarray,
    ) -> None:
        z = np.asarray(position, dtype=np.float64).reshape(-1)
        n = z.shape[0]
        self.dim = n
        self.x = np.concatenate([z, np.zeros(n)])
        pos_var = np.broadcast_to(np.square(position_std), (n,))
        vel_var = np.broadcast_to(np.square(velocity_std), (n,))
        self.P = np.diag(np.concatenate([pos_var, vel_var]).astype(np.float64))
        self._H = np.hstack([np.eye(n), np.zeros((n, n))])

    @property
    def position(self) -> np.ndarray:
        """Current position estimate ``(n,)``."""
        return self.x[: self.dim].copy()

    @property
    def velocity(self) -> np.ndarray:
        """Current velocity estimate ``(n,)`` [units / s]."""
        return self.x[self.dim :].copy()

    def predict(self, dt_s: float, accel_std: float | np.ndarray) -> None:
        """Advance by ``dt_s`` seconds; ``accel_std`` is the process noise [units / s²]."""
        if dt_s <= 0.0:
            return
        n = self.dim
        eye = np.eye(n)
        F = np.block([[eye, dt_s * eye], [np.zeros((n, n)), eye]])
        # Discrete white-noise acceleration: q = G Gᵀ σ², G = [dt²/2, dt] per axis.
        q = np.broadcast_to(np.square(accel_std), (n,))
        g_pos = 0.5 * dt_s * dt_s
        Q = np.block(
            [
                [np.diag(q * g_pos * g_pos), np.diag(q * g_pos * dt_s)],
                [np.diag(q * g_pos * dt_s), np.diag(q * dt_s * dt_s)],
            ]
        )
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
        I_KH = np.eye(2 * self.dim) - K @ H
        self.P = I_KH @ self.P @ I_KH.T + K @ R @ K.T
