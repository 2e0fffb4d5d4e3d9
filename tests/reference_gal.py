"""An independent, loop-based NumPy float64 implementation of one GAL step for the MSE loss.

Written from the paper's equations (Alg. 1, Eqs. 3-7) without torch or autograd: the gradient of
the mean squared error is derived by hand, ``d/dz_ij mean((z - y)^2) = 2 (z_ij - y_ij) / (N d)``,
and h is any NumPy function of z (an MLP forward written with matrix products), so that finite
differences in h's weights can check h's gradient of ``|r|``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np


def mlp_forward(z: np.ndarray, weights: Sequence[tuple[np.ndarray, np.ndarray]], relu: bool) -> np.ndarray:
    """``Linear -> (ReLU) -> ... -> Linear`` with no final activation."""
    x = z
    for k, (W, b) in enumerate(weights):
        x = x @ W.T + b
        if relu and k < len(weights) - 1:
            x = np.maximum(x, 0.0)
    return x


def mse(z: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean((z - y) ** 2))


def mse_rows(z: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.array([np.mean((z[i] - y[i]) ** 2) for i in range(z.shape[0])])


def reference_step(
    z: np.ndarray, y: np.ndarray, h: Callable[[np.ndarray], np.ndarray], *, alpha: float, beta: float,
    lr: float, policy: str, granularity: str, first_order: str, eps: float = 1e-12,
) -> dict:
    n, d = z.shape
    grad = 2.0 * (z - y) / (n * d)
    v = h(z)
    vt = np.zeros_like(z)
    for i in range(n):
        vt[i] = alpha * np.linalg.norm(grad[i]) * v[i] / max(np.linalg.norm(v[i]), eps)
    g = grad + vt
    eta = beta * lr
    scale = {"sum": 1.0, "sample_mean": 1.0 / n, "element_mean": 1.0 / (n * d)}[first_order]
    moved = z - eta * g

    def decide(t: float, l0: float) -> bool:
        return {"leq": t <= l0, "lt": t < l0, "always": True, "never": False}[policy]

    cos = np.mean([
        0.0 if np.linalg.norm(vt[i]) == 0 else
        vt[i] @ grad[i] / (np.linalg.norm(vt[i]) * np.linalg.norm(grad[i]))
        for i in range(n)
    ])
    if granularity == "batch":
        loss, loss_t = mse(z, y), mse(moved, y)
        first = eta * scale * sum(grad[i] @ g[i] for i in range(n))
        r = loss_t - loss + first
        acc = decide(loss_t, loss)
        chosen = g if acc else grad
        beats = float(loss_t < mse(z - eta * grad, y))
        return dict(chosen=chosen, objective=abs(r), loss=loss, tentative_loss=loss_t,
                    remainder=r, accept_rate=float(acc), cosine=cos, g_beats_grad=beats)
    per, per_t = mse_rows(z, y), mse_rows(moved, y)
    per_v = mse_rows(z - eta * grad, y)
    # each row's own loss l_i = mean_j (z_ij - y_ij)^2 has gradient 2 (z_i - y_i) / d
    row_grad = 2.0 * (z - y) / d
    r_rows = np.array([
        per_t[i] - per[i] + eta * scale * (row_grad[i] @ g[i]) for i in range(n)
    ])
    acc = np.array([decide(per_t[i], per[i]) for i in range(n)])
    chosen = np.where(acc[:, None], g, grad)
    return dict(chosen=chosen, objective=float(np.mean(np.abs(r_rows))), loss=float(per.mean()),
                tentative_loss=float(per_t.mean()), remainder=float(r_rows.mean()),
                accept_rate=float(acc.mean()), cosine=cos,
                g_beats_grad=float(np.mean(per_t < per_v)))
