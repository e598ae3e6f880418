"""Per target: whether the proxy's ranking can be reused (which k architectures are measured: ``rounds``).

**The decision.** The seed's rule reuses the proxy when the SRCC between the
proxy's predictions and the k measurements is at least 0.9 (``point``). On ten
samples that number is noisy (ten well-spread samples pass it while the fast
end is ranked wrong), so the default (``bound``) reuses only when a
*lower confidence bound* of that SRCC (one-sided, at ``confidence``) clears the
threshold, and adapts otherwise. The bound is the smallest of exact
small-sample bounds (test inversion under a Gaussian and a Student-t1 copula:
they hold their confidence at every k, where the bootstrap alone gave a
perfectly ordered 3-sample the bound 1.0; the t1 copula because real device
pairs' sample SRCC is more spread than a Gaussian copula's), a bound calibrated
on the real device pairs of the shipped tables and the percentile bootstrap
(issue 17). The transfer (``multi``) has the proxy among
its sources, so adapting keeps what the proxy's ranking gets right; the
benchmark (bench/sweep_quality.py) checks it against reuse on real devices.
A cross-validated comparison of the transfer with reuse on the k samples was
tried as a gate and dropped: with 8-9 training samples it is biased against the
transfer (edgegpu: cross-validated 0.49-0.71 against a whole-table 0.74) and
kept the worse choice.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import lru_cache

import numpy as np

from orchestrator.latency.metrics import srcc
from orchestrator.ranks import average_ranks, is_constant

REUSE, ADAPT = "reuse", "adapt"


def bootstrap_srcc_lower_bound(x: np.ndarray, y: np.ndarray, confidence: float, rng: np.random.Generator,
                               n_boot: int = 2000) -> float:
    """One-sided percentile-bootstrap lower bound of SRCC(x, y): the (1 - confidence) quantile over resampled
    pairs (resamples with a constant side, where SRCC is undefined, are left out). Anti-conservative at small
    k: every resample of a perfectly ordered sample is perfectly ordered, so its bound is 1.0 at any k."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    n = len(x)
    idx = rng.integers(0, n, size=(n_boot, n))
    rx = average_ranks(x[idx], axis=1)
    ry = average_ranks(y[idx], axis=1)
    rx -= rx.mean(1, keepdims=True)
    ry -= ry.mean(1, keepdims=True)
    den = np.sqrt((rx**2).sum(1) * (ry**2).sum(1))
    ok = den > 0
    if not ok.any():
        return float("nan")
    r = (rx * ry).sum(1)[ok] / den[ok]
    return float(np.quantile(r, 1.0 - confidence))


# The exact small-sample bound: the sample SRCC of k pairs drawn from a population whose dependence is a given
# copula with Spearman correlation rho, simulated (NULL_DRAWS samples of k, common random numbers for every rho, a
# fixed seed: a deterministic table), inverted as a one-sided test on a grid of rho. Two copulas (issue 17, turn
# 6): the Gaussian one, and Student's t with one degree of freedom, whose points share a heavy-tailed common scale,
# so the dependence is strong in some regions of the population and weak in others, as on real device pairs
# (a search space's cells fall into groups of near-equal latency); its sample SRCC is more spread than the
# Gaussian copula's at the same rho (rho 0.65, k = 10: standard deviation 0.28 against 0.23; FBNet's
# essential_ph_1 / samsung_s7, SRCC 0.65: 0.27).
NULL_DRAWS = 4000
RHO_GRID = np.round(np.linspace(-1.0, 1.0, 401), 6)  # steps of 0.005
EXACT_MAX_K = 100  # above: this k's null rescaled to the sample's size (_null_srcc)
COPULAS = ("gaussian", "t1")  # the bound of a sample is the smallest over these (srcc_lower_bound)
T_DF = 1


@lru_cache(maxsize=8)
def _null_draws(k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(z, e, centred ranks of z, the t copula's common scale per point, centred ranks of z / scale)."""
    rng = np.random.default_rng([20_261_130, k])
    z = rng.standard_normal((NULL_DRAWS, k))
    e = rng.standard_normal((NULL_DRAWS, k))
    rz = average_ranks(z, axis=1)
    s = np.sqrt(rng.chisquare(T_DF, (NULL_DRAWS, k)) / T_DF)
    rt = average_ranks(z / s, axis=1)
    return z, e, rz - rz.mean(1, keepdims=True), s, rt - rt.mean(1, keepdims=True)


@lru_cache(maxsize=1)
def _t_pearson_grid() -> np.ndarray:
    """Per RHO_GRID Spearman correlation: the t copula's (T_DF) correlation parameter. Spearman's rho of a normal
    variance mixture X = sqrt(W) Z is (6 / pi) E[arcsin(r W / sqrt((W + W')(W + W'')))] with W, W', W'' iid
    (Heinen and Valdesogo; checked by simulation in tests); W = T_DF / chi2(T_DF), a fixed-seed Monte Carlo of
    400,000 triples (error about 0.001), inverted by interpolation. About 1.5-3 s of every process that bounds an
    SRCC (a run, `hwnas validate`): kept in hwnas's disk cache (``orchestrator/disk_cache.py``), keyed by T_DF and
    this module's text."""
    from orchestrator import disk_cache

    key = f"df{T_DF}-{disk_cache.code_version('sweep/decision.py')}"
    return disk_cache.cached("t-copula-grid", key, _t_pearson_grid_computed, lambda g: [float(v) for v in g],
                             _grid_of)


def _grid_of(raw: list) -> np.ndarray:
    g = np.asarray(raw, dtype=float)
    if g.shape != RHO_GRID.shape or not np.isfinite(g).all():
        raise ValueError(f"not a grid of {len(RHO_GRID)} numbers")
    return g


def _t_pearson_grid_computed() -> np.ndarray:
    rng = np.random.default_rng([20_261_201, round(T_DF * 1000)])
    w = T_DF / rng.chisquare(T_DF, (3, 400_000))
    c = w[0] / np.sqrt((w[0] + w[1]) * (w[0] + w[2]))
    rs = np.linspace(0.0, 1.0, 401)
    sp = np.array([6.0 / np.pi * np.mean(np.arcsin(r * c)) for r in rs])
    sp[-1] = 1.0
    return np.sign(RHO_GRID) * np.interp(np.abs(RHO_GRID), sp, rs)


@lru_cache(maxsize=4096)  # 32 kB each
def _null_srcc(k: int, j: int, copula: str = "gaussian") -> np.ndarray:
    """Sorted sample SRCCs of k pairs under ``copula`` (COPULAS) with Spearman correlation RHO_GRID[j]."""
    rho_s = float(RHO_GRID[j])
    if abs(rho_s) >= 1.0:
        return np.full(NULL_DRAWS, np.sign(rho_s))
    if k > EXACT_MAX_K:  # the EXACT_MAX_K null, its spread scaled by sqrt((EXACT_MAX_K - 1) / (k - 1)) and its
        # mean moved to E[r] = rho - 3 (rho - tau) / (k + 1) (the sample SRCC's mean for a continuous population)
        base = _null_srcc(EXACT_MAX_K, j, copula)
        m = float(base.mean())
        mk = rho_s - (rho_s - m) * (EXACT_MAX_K + 1) / (k + 1)
        return np.clip(mk + (base - m) * np.sqrt((EXACT_MAX_K - 1) / (k - 1)), -1.0, 1.0)
    z, e, rz, s, rt = _null_draws(k)
    if copula == "gaussian":
        r = 2.0 * np.sin(np.pi * rho_s / 6.0)  # the copula's Pearson correlation for this Spearman correlation
        w = r * z + np.sqrt(1.0 - r * r) * e
    elif copula == "t1":  # (z, w) / s is bivariate t: its ranks are the t copula's
        r = float(_t_pearson_grid()[j])
        w = (r * z + np.sqrt(1.0 - r * r) * e) / s
        rz = rt
    else:
        raise ValueError(f"unknown copula {copula!r}; known: {COPULAS}")
    rw = average_ranks(w, axis=1)
    rw -= rw.mean(1, keepdims=True)
    return np.sort((rz * rw).sum(1) / np.sqrt((rz**2).sum(1) * (rw**2).sum(1)))


def _p_at_least(k: int, j: int, r: float, copula: str = "gaussian") -> float:
    """P(sample SRCC >= r) for k pairs at population SRCC RHO_GRID[j] (a hair of rounding allowed)."""
    d = _null_srcc(k, j, copula)
    return 1.0 - np.searchsorted(d, r - 1e-9, side="left") / len(d)


def exact_srcc_lower_bound(r: float, k: int, confidence: float, copula: str = "gaussian") -> float:
    """The one-sided lower confidence bound of a population SRCC from the sample SRCC ``r`` of k pairs: the
    largest grid rho whose chance of a sample SRCC of at least ``r`` is at most ``1 - confidence`` (test
    inversion). Exact, up to the grid step and NULL_DRAWS, for a population whose dependence is ``copula``
    (COPULAS: "gaussian", or "t1", Student's t with one degree of freedom), and valid at every k >= 3: a
    perfectly ordered 3-sample has a Gaussian-copula bound of about -0.2 at 90 % (one in six such samples is
    perfectly ordered when the devices are unrelated). Above EXACT_MAX_K the simulated null of EXACT_MAX_K pairs,
    rescaled to k (before turn 6 of issue 17: Fisher's z with the Bonett-Wright standard error, a Gaussian
    approximation). -1.0 when no rho is excluded; ValueError for an unknown copula."""
    if copula not in COPULAS:
        raise ValueError(f"unknown copula {copula!r}; known: {COPULAS}")
    if not np.isfinite(r):
        return float("nan")
    alpha = 1.0 - confidence
    lo, hi = 0, len(RHO_GRID) - 1  # p(rho) grows with rho: the largest j with p <= alpha, by bisection
    if _p_at_least(k, lo, r, copula) > alpha:
        return -1.0
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _p_at_least(k, mid, r, copula) <= alpha:
            lo = mid
        else:
            hi = mid
    return float(RHO_GRID[lo])


def copula_srcc_lower_bound(r: float, k: int, confidence: float) -> float:
    """The smallest of ``exact_srcc_lower_bound`` over COPULAS: a bound exact for either population."""
    return min(exact_srcc_lower_bound(r, k, confidence, c) for c in COPULAS)


# The empirical part: the device pairs of the shipped latency tables (NB201's whole space on HELP's 19 devices,
# FBNet and OFA on HELP's devices, HW-NAS-Bench's six devices: 372 pairs). Real pairs are not Gaussian copulas:
# a space's cells fall into groups of near-equal latency on every device and phones report whole milliseconds,
# so a small random sample is more often (near) perfectly ordered than a Gaussian copula of the same SRCC
# allows, and the exact bound alone was exceeded in up to 31 % of samples at k = 10 (issue 17). Each pair is
# simulated as a population (random k-samples of its common cells, fixed seed); a pair whose upper quantile of
# the sample SRCC reaches the observed r cannot be excluded, so the bound is at most its SRCC.
CALIBRATION_TABLES = ("nb201_full_15625.csv", "fbnet_5000.csv", "ofa_mbv3_5000.csv", "nb201_hwnasbench_6devices.csv")
CALIBRATION_DRAWS = 1000
CALIBRATION_MAX_K = 50  # above: the k = 50 table (a wider null than the larger sample's: conservative)
CALIBRATION_SHARE = 0.5  # each pair is excluded at half the error rate, (1 - confidence) / 2: a margin for pairs
# the shipped tables do not hold. On the shipped pairs the bound's exceedance is at most 0.07 at 90 %; calibrated
# without FBNet and OFA and tested on them, the worst pair's fell from 0.21-0.32 (exact alone) to 0.11-0.19


@lru_cache(maxsize=1)
def _calibration_tables() -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    """Per shipped table: (latency matrix of the cells measured on every device (n, m), population SRCC (m, m))."""
    from importlib import resources

    import pandas as pd

    out = []
    for name in CALIBRATION_TABLES:
        with resources.as_file(resources.files("orchestrator") / "data" / name) as path:
            df = pd.read_csv(path)
        M = df[[c for c in df.columns if c.startswith("lat_ms_")]].to_numpy(float)
        M = M[np.isfinite(M).all(1)]
        R = average_ranks(M, axis=0)
        out.append((M, np.corrcoef(R, rowvar=False)))
    return tuple(out)


def _sample_srcc(M: np.ndarray, k: int, draws: int, rng: np.random.Generator) -> np.ndarray:
    """SRCC of every device pair on ``draws`` random k-samples of M's rows (without replacement): (draws, m, m),
    NaN where a side is constant."""
    n = len(M)
    if k * k > 8 * n:  # redrawing samples with a repeat would rarely end: a random k of each row's permutation
        idx = np.argsort(rng.random((draws, n)), axis=1)[:, :k]
        return _srcc_of_rows(M, idx)
    idx = rng.integers(0, n, (draws, k))
    dup = (np.diff(np.sort(idx, 1), axis=1) == 0).any(1)
    while dup.any():
        idx[dup] = rng.integers(0, n, (int(dup.sum()), k))
        dup = (np.diff(np.sort(idx, 1), axis=1) == 0).any(1)
    return _srcc_of_rows(M, idx)


def _srcc_of_rows(M: np.ndarray, idx: np.ndarray) -> np.ndarray:
    draws, k = idx.shape
    S = M[idx]  # (draws, k, m)
    R = average_ranks(S.transpose(1, 0, 2).reshape(k, -1), axis=0).reshape(k, draws, -1).transpose(1, 0, 2)
    R -= R.mean(1, keepdims=True)
    C = np.einsum("dka,dkb->dab", R, R)
    d = np.sqrt(np.einsum("daa->da", C))
    with np.errstate(invalid="ignore", divide="ignore"):
        return C / (d[:, :, None] * d[:, None, :])


@lru_cache(maxsize=256)
def _calibration_envelope(k: int, level: float) -> tuple[np.ndarray, np.ndarray]:
    """(q sorted, rho): the ``level`` quantile of each shipped pair's k-sample SRCC, and the smallest population
    SRCC among the pairs whose quantile is at least q (a suffix minimum)."""
    rng = np.random.default_rng([20_261_130, k, 17])
    qs, rhos = [], []
    for M, rho in _calibration_tables():
        m = M.shape[1]
        S = _sample_srcc(M, k, CALIBRATION_DRAWS, rng)
        a, b = np.triu_indices(m, 1)
        for i, j in zip(a, b, strict=True):
            s = S[:, i, j]
            s = s[np.isfinite(s)]
            if len(s):
                qs.append(float(np.quantile(s, level, method="higher")))
                rhos.append(float(rho[i, j]))
    order = np.argsort(qs, kind="stable")
    q, r = np.asarray(qs)[order], np.asarray(rhos)[order]
    return q, np.minimum.accumulate(r[::-1])[::-1]


def empirical_srcc_lower_bound(r: float, k: int, confidence: float) -> float:
    """Lower bound of a population SRCC from the sample SRCC ``r`` of k pairs, calibrated on the real device pairs
    of the shipped tables (CALIBRATION_TABLES): the smallest population SRCC among the pairs whose
    ``1 - (1 - confidence) * CALIBRATION_SHARE`` quantile of the k-sample SRCC is at least ``r`` (those the
    sample cannot exclude); 1.0 when it excludes them all (the exact bound then decides). k above
    CALIBRATION_MAX_K uses that k's table."""
    if not np.isfinite(r):
        return float("nan")
    level = round(1.0 - (1.0 - confidence) * CALIBRATION_SHARE, 9)
    q, rmin = _calibration_envelope(min(int(k), CALIBRATION_MAX_K), level)
    j = int(np.searchsorted(q, r - 1e-9, side="left"))
    return float(rmin[j]) if j < len(q) else 1.0


def srcc_lower_bound(x: np.ndarray, y: np.ndarray, confidence: float, rng: np.random.Generator,
                     n_boot: int = 2000) -> float:
    """One-sided lower confidence bound (at ``confidence``) of the SRCC between the devices x and y are
    measurements of, from k paired measurements (x, y: shape (k,), any units): the smallest of the exact
    small-sample bounds (``copula_srcc_lower_bound``: exact for a Gaussian- or a t1-copula population), the bound
    calibrated on the shipped tables' real device pairs (``empirical_srcc_lower_bound``) and the percentile
    bootstrap (which sees a spread the sample shows, from about k = 10). NaN where the SRCC is undefined (fewer
    than 3 pairs, a constant side). Measured coverage (bench/bound_coverage.py, docs/benchmarks.md, issue 17
    turns 4 to 6): on every device pair of the four shipped tables, held out by table in both directions
    (calibrated on two tables, tested on the other two) and in-sample, the bound exceeds the pair's SRCC in at
    most 1 - confidence of random k-samples within Monte-Carlo error, at every k measured (3 to 300). Not
    distribution-free: a population whose sample SRCC is more spread than the t1 copula's can exceed it."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    r = srcc(x, y)
    if not np.isfinite(r):
        return float("nan")
    k = len(x)
    exact = min(copula_srcc_lower_bound(r, k, confidence), empirical_srcc_lower_bound(r, k, confidence))
    boot = bootstrap_srcc_lower_bound(x, y, confidence, rng, n_boot)
    return float(np.nanmin([exact, boot]))


def max_srcc_lower_bound(k: int, confidence: float) -> float:
    """The highest lower bound k samples can show (a perfectly ordered sample): below the SRCC threshold, the
    bound rule can never reuse at this k."""
    return min(copula_srcc_lower_bound(1.0, k, confidence), empirical_srcc_lower_bound(1.0, k, confidence))


@dataclass(frozen=True)
class Decision:
    decision: str  # reuse | adapt
    reason: str
    srcc_k: float  # SRCC(proxy prediction, target) on the k samples
    srcc_lb: float  # its lower confidence bound (srcc_lower_bound; NaN with the point rule)

    def as_dict(self) -> dict[str, float | str]:
        return asdict(self)


def decide(proxy_k: np.ndarray, y: np.ndarray, *, threshold: float, rule: str, confidence: float,
           rng: np.random.Generator, can_adapt: bool = True) -> Decision:
    """Reuse or adapt (see the module doc); ``can_adapt`` False: no transfer sources, reuse."""
    s = srcc(proxy_k, y) if len(y) >= 3 else float("nan")
    nan = float("nan")
    if not can_adapt:
        return Decision(REUSE, "no transfer sources", s, nan)
    if np.isnan(s):
        why = ("the target's k latencies are all equal" if len(y) >= 3 and is_constant(y) else
               "the proxy predicts the same latency for all k" if len(y) >= 3 and is_constant(proxy_k) else
               "fewer than 3 samples")
        return Decision(ADAPT, f"srcc undefined: {why}", s, nan)
    if rule == "point":
        ok = not np.isnan(s) and s >= threshold
        return Decision(REUSE if ok else ADAPT, f"srcc {'>=' if ok else '<'} {threshold}", s, nan)
    lb = srcc_lower_bound(proxy_k, y, confidence, rng) if not np.isnan(s) else nan
    if not np.isnan(lb) and lb >= threshold:
        return Decision(REUSE, f"srcc lower bound >= {threshold}", s, lb)
    return Decision(ADAPT, f"srcc lower bound < {threshold}", s, lb)
