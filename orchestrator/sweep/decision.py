"""Per target: which k architectures to measure, and whether the proxy's ranking can be reused.

**Choosing k.** Part of the k (``front_share``) lies along the proxy's front
over the whole domain, evenly from its fastest to its most accurate member
(both ends: the fast end is where a wrong ranking costs whole budgets); the
rest at evenly spaced ranks of the proxy's predicted latency over what the
target can be measured on.

**The decision.** The seed's rule reuses the proxy when the SRCC between the
proxy's predictions and the k measurements is at least 0.9 (``point``). On ten
samples that number is noisy (ten well-spread samples pass it while the fast
end is ranked wrong), so the default (``bound``) reuses only when the
*bootstrap lower bound* of that SRCC (one-sided, at ``confidence``) clears the
threshold, and adapts otherwise. The transfer (``multi``) has the proxy among
its sources, so adapting keeps what the proxy's ranking gets right; the
benchmark (bench/sweep_quality.py) checks it against reuse on real devices.
A cross-validated comparison of the transfer with reuse on the k samples was
tried as a gate and dropped: with 8-9 training samples it is biased against the
transfer (edgegpu: cross-validated 0.49-0.71 against a whole-table 0.74) and
kept the worse choice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy.stats import rankdata

from orchestrator.latency.metrics import srcc

REUSE, ADAPT = "reuse", "adapt"


def pick_k(ids: Sequence[str], proxy_ms: np.ndarray, k: int, front_ids: Sequence[str] = (),
           front_share: float = 0.0) -> list[str]:
    """k of ``ids``: ``round(front_share * k)`` along the front (``front_ids`` ordered by proxy latency, both ends
    included), the rest at evenly spaced proxy-latency ranks of ``ids`` (fastest and slowest included)."""
    ids = list(ids)
    proxy_ms = np.asarray(proxy_ms, dtype=float)
    if len(ids) <= k:
        return [ids[i] for i in np.argsort(proxy_ms, kind="stable")]
    lat = dict(zip(ids, proxy_ms, strict=True))
    front = sorted((a for a in dict.fromkeys(front_ids) if a in lat), key=lambda a: lat[a])
    n_front = min(len(front), int(round(front_share * k)))
    chosen: list[str] = []
    if n_front:
        chosen = [front[p] for p in np.unique(np.round(np.linspace(0, len(front) - 1, n_front)).astype(int))]
    rest = [a for a in (ids[i] for i in np.argsort(proxy_ms, kind="stable")) if a not in set(chosen)]
    n_rest = k - len(chosen)
    if n_rest > 0:
        pos = np.unique(np.round(np.linspace(0, len(rest) - 1, n_rest)).astype(int))
        chosen += [rest[p] for p in pos]
    return chosen


def srcc_lower_bound(x: np.ndarray, y: np.ndarray, confidence: float, rng: np.random.Generator,
                     n_boot: int = 2000) -> float:
    """One-sided bootstrap lower bound of SRCC(x, y): the (1 - confidence) quantile over resampled pairs
    (resamples with a constant side, where SRCC is undefined, are drawn again by leaving them out)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    n = len(x)
    idx = rng.integers(0, n, size=(n_boot, n))
    rx = rankdata(x[idx], axis=1)
    ry = rankdata(y[idx], axis=1)
    rx -= rx.mean(1, keepdims=True)
    ry -= ry.mean(1, keepdims=True)
    den = np.sqrt((rx**2).sum(1) * (ry**2).sum(1))
    ok = den > 0
    if not ok.any():
        return float("nan")
    r = (rx * ry).sum(1)[ok] / den[ok]
    return float(np.quantile(r, 1.0 - confidence))


@dataclass(frozen=True)
class Decision:
    decision: str  # reuse | adapt
    reason: str
    srcc_k: float  # SRCC(proxy prediction, target) on the k samples
    srcc_lb: float  # its bootstrap lower bound (NaN with the point rule)

    def as_dict(self) -> dict[str, float | str]:
        return asdict(self)


def decide(proxy_k: np.ndarray, y: np.ndarray, *, threshold: float, rule: str, confidence: float,
           rng: np.random.Generator, can_adapt: bool = True) -> Decision:
    """Reuse or adapt (see the module doc); ``can_adapt`` False: no transfer sources, reuse."""
    s = srcc(proxy_k, y) if len(y) >= 3 else float("nan")
    nan = float("nan")
    if not can_adapt:
        return Decision(REUSE, "no transfer sources", s, nan)
    if rule == "point":
        ok = not np.isnan(s) and s >= threshold
        return Decision(REUSE if ok else ADAPT, f"srcc {'>=' if ok else '<'} {threshold}", s, nan)
    lb = srcc_lower_bound(proxy_k, y, confidence, rng) if not np.isnan(s) else nan
    if not np.isnan(lb) and lb >= threshold:
        return Decision(REUSE, f"srcc lower bound >= {threshold}", s, lb)
    return Decision(ADAPT, f"srcc lower bound < {threshold}", s, lb)
