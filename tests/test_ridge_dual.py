"""The dual ridge form equals the primal solve (thetas and leave-one-out residuals)."""

from __future__ import annotations

import numpy as np
import pytest

from orchestrator.latency.ridge_dual import dual_applies, ridge_many_dual


def _primal(F: np.ndarray, y: np.ndarray, pens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    thetas, loos = [], []
    for pen in pens:
        A = F.T @ F + np.diag(pen)
        theta = np.linalg.solve(A, F.T @ y)
        H = F @ np.linalg.solve(A, F.T)
        h = np.diag(H)
        thetas.append(theta)
        loos.append((y - F @ theta) / (1 - h))
    return np.array(thetas), np.array(loos)


@pytest.mark.parametrize("n_free", [0, 1, 2])
def test_dual_equals_primal(n_free: int) -> None:
    rng = np.random.default_rng(n_free)
    k, p = 10, 60
    F = rng.normal(size=(k, p))
    if n_free:
        F[:, 0] = 1.0
    y = rng.normal(size=k) + 3.0
    pens = np.exp(rng.uniform(-3, 4, size=(7, p)))
    pens[:, :n_free] = 0.0
    assert dual_applies(F, pens)
    t_d, l_d = ridge_many_dual(F, y, pens)
    t_p, l_p = _primal(F, y, pens)
    np.testing.assert_allclose(t_d, t_p, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(l_d, l_p, rtol=1e-6, atol=1e-8)


def test_dual_not_applied_where_it_would_be_wrong() -> None:
    F = np.ones((10, 5))
    assert not dual_applies(F, np.ones((2, 5)))  # more samples than features: the primal is cheaper
    F = np.ones((4, 20))
    mixed = np.ones((2, 20))
    mixed[0, 0] = 0.0
    assert not dual_applies(F, mixed)  # unpenalised columns differ between penalty vectors
    many_free = np.ones((1, 20))
    many_free[0, :4] = 0.0
    assert not dual_applies(F, many_free)  # as many unpenalised columns as samples


def test_transfer_multi_on_fbnet_uses_dual_and_matches_primal() -> None:
    from orchestrator.latency import transfer

    rng = np.random.default_rng(3)
    F = rng.normal(size=(12, 80))
    F[:, 0] = 1.0
    y = rng.normal(size=12) + 5.0
    pens = np.stack([transfer._multi_pen(5, 4, 70, hp) for hp in transfer.MULTI_GRID[:9]])
    t, loo = transfer._ridge_many(F, y, pens)
    t_p, l_p = _primal(F, y, pens)
    np.testing.assert_allclose(t, t_p, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(loo, l_p, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(transfer._ridge(F, y, pens[2]), t_p[2], rtol=1e-6, atol=1e-8)


def test_loo_is_exact_where_the_fit_nearly_interpolates() -> None:
    """p >> k with a tiny penalty: leverages near 1. The dual's leave-one-out residual equals refitting
    without the sample (the primal's 0.99 clip would shrink it by orders of magnitude)."""
    rng = np.random.default_rng(5)
    k, p = 8, 200
    F = rng.normal(size=(k, p))
    F[:, 0] = 1.0
    y = rng.normal(size=k)
    pen = np.full(p, 1e-3)
    pen[0] = 0.0
    _, loo = ridge_many_dual(F, y, pen[None, :])
    for i in range(k):
        keep = np.arange(k) != i
        theta = np.linalg.solve(F[keep].T @ F[keep] + np.diag(pen), F[keep].T @ y[keep])
        assert loo[0, i] == pytest.approx(y[i] - F[i] @ theta, rel=1e-5)
