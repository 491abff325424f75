"""Smoothing the position along a matched path (:func:`trafficunit.match_trace`).

Two motion models, each a constant-velocity Kalman filter with a Rauch-Tung-Striebel smoother,
run side by side (vectorised over the models) on the positions of the points projected onto the
path:

- ``"free"``: constant velocity along the path in metres; the speed wanders with white
  acceleration noise of ``accel`` m/s².
- ``"limits"``: constant velocity in *limit time* ``tau(s)``, the time a vehicle driving at the
  speed limits would take to reach ``s``. Its velocity is the ratio of the speed to the limit,
  so a vehicle that keeps to the same share of each unit's limit (speeding up and slowing down
  where the limit changes) moves at a constant rate; the ratio wanders with ``accel / limit``.

Without a fixed ``accel`` each model is run with every acceleration of :data:`ACCEL_GRID`, and
the model and acceleration with the highest marginal likelihood of the projected positions
(the Kalman innovations; for ``"limits"`` with the Jacobian of ``tau``) is kept: the trace
itself says whether it keeps to the limits and how steadily it drives.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Accelerations (m/s²) the smoother chooses from by likelihood when none is given.
ACCEL_GRID = (0.003, 0.01, 0.03, 0.1, 0.3, 1.0)

#: Values of ``speed_model`` of :func:`trafficunit.match_trace`.
SPEED_MODELS = ("auto", "free", "limits")


@dataclass
class Smoothed:
    """Smoothed position (m along the path), speed (m/s) and its standard deviation, and the
    model kept (``"free"`` or ``"limits"``) with its acceleration."""

    s: np.ndarray
    speed: np.ndarray
    speed_sd: np.ndarray
    model: str
    accel: float


def _rts_batch(
    z: np.ndarray, t: np.ndarray, r: np.ndarray, q: np.ndarray, v_var0: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Constant-velocity Kalman filter + RTS smoother for M models at once.

    ``z``, ``r`` (measurement variance) and ``q`` (process noise, acceleration squared) are
    (M, n); ``v_var0`` (M,) the initial velocity variance. Returns smoothed position, velocity,
    velocity variance (all (M, n)) and the log-likelihood of the measurements (M,).
    """
    m, n = z.shape
    x0 = np.zeros((m, n))
    x1 = np.zeros((m, n))
    f00, f01, f11 = np.zeros((m, n)), np.zeros((m, n)), np.zeros((m, n))  # filtered covariance
    p00, p01, p11 = np.zeros((m, n)), np.zeros((m, n)), np.zeros((m, n))  # predicted covariance
    a = z[:, 0].copy()
    b = (z[:, 1] - z[:, 0]) / max(float(t[1] - t[0]), 1e-3) if n > 1 else np.zeros(m)
    c00, c01, c11 = r[:, 0].copy(), np.zeros(m), v_var0.astype(float).copy()
    ll = np.zeros(m)
    for i in range(n):
        if i:
            dt = float(t[i] - t[i - 1])
            qi = q[:, i]
            a = a + dt * b
            c00, c01, c11 = (
                c00 + 2 * dt * c01 + dt * dt * c11 + qi * dt**4 / 4,
                c01 + dt * c11 + qi * dt**3 / 2,
                c11 + qi * dt * dt,
            )
        p00[:, i], p01[:, i], p11[:, i] = c00, c01, c11
        s = c00 + r[:, i]
        inn = z[:, i] - a
        ll -= 0.5 * (inn * inn / s + np.log(2 * np.pi * s))
        k0, k1 = c00 / s, c01 / s
        a, b = a + k0 * inn, b + k1 * inn
        c00, c01, c11 = c00 - k0 * c00, c01 - k0 * c01, c11 - k1 * c01
        x0[:, i], x1[:, i] = a, b
        f00[:, i], f01[:, i], f11[:, i] = c00, c01, c11
    s00, s01, s11 = f00[:, -1].copy(), f01[:, -1].copy(), f11[:, -1].copy()
    for i in range(n - 2, -1, -1):
        dt = float(t[i + 1] - t[i])
        # C = Pf F' inv(Pp): Pf F' = [[f00 + dt f01, f01], [f01 + dt f11, f11]]
        g00, g01 = f00[:, i] + dt * f01[:, i], f01[:, i]
        g10, g11 = f01[:, i] + dt * f11[:, i], f11[:, i]
        e00, e01, e11 = p00[:, i + 1], p01[:, i + 1], p11[:, i + 1]
        det = np.maximum(e00 * e11 - e01 * e01, 1e-300)
        i00, i01, i11 = e11 / det, -e01 / det, e00 / det
        k00, k01 = g00 * i00 + g01 * i01, g00 * i01 + g01 * i11
        k10, k11 = g10 * i00 + g11 * i01, g10 * i01 + g11 * i11
        dx0 = x0[:, i + 1] - (x0[:, i] + dt * x1[:, i])
        dx1 = x1[:, i + 1] - x1[:, i]
        x0[:, i] += k00 * dx0 + k01 * dx1
        x1[:, i] += k10 * dx0 + k11 * dx1
        d00, d01, d11 = s00 - e00, s01 - e01, s11 - e11
        s00 = f00[:, i] + k00 * (k00 * d00 + k01 * d01) + k01 * (k00 * d01 + k01 * d11)
        s01 = f01[:, i] + k00 * (k10 * d00 + k11 * d01) + k01 * (k10 * d01 + k11 * d11)
        s11 = f11[:, i] + k10 * (k10 * d00 + k11 * d01) + k11 * (k10 * d01 + k11 * d11)
        f11[:, i] = s11
    f11[:, -1] = np.maximum(f11[:, -1], 0.0)
    return x0, x1, f11, ll


def smooth_along(
    s: np.ndarray,
    t: np.ndarray,
    ends: np.ndarray,
    v_piece: np.ndarray,
    *,
    sigma: float,
    accel: float | None,
    model: str,
) -> Smoothed:
    """Smooth positions ``s`` (m along a path of pieces ending at ``ends``, with speed limits
    ``v_piece`` in m/s) observed at times ``t`` with noise ``sigma`` (see the module)."""
    n = len(s)
    accels = np.asarray(ACCEL_GRID if accel is None else (accel,), dtype=float)
    models = ("free", "limits") if model == "auto" else (model,)
    bounds = np.r_[0.0, ends]
    tau_b = np.r_[0.0, np.cumsum(np.diff(bounds) / v_piece)]
    piece = np.clip(np.searchsorted(ends, s, side="left"), 0, len(ends) - 1)
    vi = v_piece[piece]
    z, r, q, v0, jac = [], [], [], [], []
    for mo in models:
        scale = vi if mo == "limits" else np.ones(n)
        zz = np.interp(s, bounds, tau_b) if mo == "limits" else s
        for acc in accels.tolist():
            z.append(zz)
            r.append((sigma / scale) ** 2)
            q.append((acc / scale) ** 2)
            v0.append(100.0 / float(np.median(scale)) ** 2)
            jac.append(-float(np.log(scale).sum()))
    x, v, vv, ll = _rts_batch(np.array(z), t, np.array(r), np.array(q), np.array(v0))
    best = int(np.argmax(ll + np.array(jac)))
    mo = models[best // len(accels)]
    acc = float(accels[best % len(accels)])
    if mo == "free":
        return Smoothed(x[best], v[best], np.sqrt(np.maximum(vv[best], 0.0)), mo, acc)
    s_hat = np.interp(x[best], tau_b, bounds)
    lim = v_piece[np.clip(np.searchsorted(ends, s_hat, side="left"), 0, len(ends) - 1)]
    return Smoothed(s_hat, v[best] * lim, np.sqrt(np.maximum(vv[best], 0.0)) * lim, mo, acc)
