"""Latency monotonicity: SRCC between devices, proxy choice, heatmap."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from orchestrator.errors import TableError
from orchestrator.latency.metrics import srcc
from orchestrator.latency.table import LatencyTable

PROXY_CRITERIA = ("min", "mean")


@dataclass(frozen=True)
class SrccMatrix:
    devices: list[str]
    srcc: np.ndarray  # (d, d); NaN: unknown (too few shared architectures, or a side constant on them)
    shared: np.ndarray  # (d, d) number of architectures measured on both
    min_shared: int = 3

    def unknown_pairs(self) -> list[tuple[str, str, str]]:
        """(device, device, why) of every pair whose SRCC is unknown."""
        out = []
        for i, j in zip(*np.triu_indices(len(self.devices), 1), strict=True):
            if np.isnan(self.srcc[i, j]):
                n = int(self.shared[i, j])
                why = ("no measured architecture in common" if n == 0 else
                       f"only {n} measured architecture(s) in common (SRCC needs {self.min_shared})"
                       if n < self.min_shared else
                       f"SRCC undefined: one of them is constant on their {n} common architectures")
                out.append((self.devices[i], self.devices[j], why))
        return out

    def proxy(self, criterion: str = "min") -> tuple[str, float]:
        """The device with the highest minimum (or mean) SRCC to the others, and that value.

        Only devices whose SRCC to every other device is known are eligible: an unknown pair is never taken
        as if it agreed (nor left out of a minimum). Raises TableError naming the unknown pairs when no
        device is eligible (e.g. two devices measured on disjoint architectures).
        """
        if criterion not in PROXY_CRITERIA:
            raise ValueError(f"proxy criterion {criterion!r} is not one of {PROXY_CRITERIA}")
        d = len(self.devices)
        if d < 2:
            raise TableError("choosing a proxy needs at least two devices")
        off = ~np.eye(d, dtype=bool)
        eligible = [i for i in range(d) if not np.isnan(self.srcc[i][off[i]]).any()]
        if not eligible:
            pairs = "; ".join(f"{a} and {b}: {why}" for a, b, why in self.unknown_pairs()[:10])
            raise TableError(f"no device's latency ranking can be compared with every other's ({pairs}); measure "
                             f"those devices on common architectures (at least {self.min_shared}), or leave one "
                             f"of each pair out")
        vals = {i: float(self.srcc[i][off[i]].min() if criterion == "min" else self.srcc[i][off[i]].mean())
                for i in eligible}
        i = max(eligible, key=lambda j: vals[j])  # ties: the first column
        return self.devices[i], vals[i]

    def format(self) -> str:
        """The matrix as text ('-' where a pair's SRCC is unknown)."""
        w = max(8, *(len(d) for d in self.devices)) + 1
        lines = [" " * w + "".join(f"{d:>{w}s}" for d in self.devices)]
        for i, d in enumerate(self.devices):
            lines.append(f"{d:<{w}s}" + "".join(f"{'-':>{w}s}" if np.isnan(v) else f"{v:>{w}.3f}"
                                                 for v in self.srcc[i]))
        return "\n".join(lines)


def srcc_matrix(table: LatencyTable, min_shared: int = 3) -> SrccMatrix:
    """Pairwise SRCC over the architectures each pair of devices shares (NaN where they share fewer than
    ``min_shared``, or one of them is constant there). Columns measured on every row are ranked once (average
    ranks of values equal within rounding) and correlated in one product (a table of hundreds of devices in
    well under a second); pairs with a gap are computed one by one."""
    from orchestrator.ranks import average_ranks

    V = table.values
    d = len(table.devices)
    M = np.eye(d)
    N = np.zeros((d, d), dtype=int)
    ok = ~np.isnan(V)
    full = ok.all(axis=0) if len(V) >= min_shared else np.zeros(d, dtype=bool)
    idx = np.flatnonzero(full)
    if len(idx) >= 2:
        R = average_ranks(V[:, idx], axis=0)
        R -= R.mean(axis=0)
        norm = np.sqrt((R * R).sum(axis=0))
        const = norm == 0  # a constant column ranks nothing: SRCC undefined (NaN, as metrics.srcc)
        norm[const] = 1.0
        C = (R.T @ R) / np.outer(norm, norm)
        C[const, :] = np.nan
        C[:, const] = np.nan
        np.fill_diagonal(C, 1.0)
        M[np.ix_(idx, idx)] = np.clip(C, -1.0, 1.0)
        N[np.ix_(idx, idx)] = len(V)
    for i in range(d):
        N[i, i] = ok[:, i].sum()
        for j in range(i + 1, d):
            if full[i] and full[j]:
                continue
            both = ok[:, i] & ok[:, j]
            N[i, j] = N[j, i] = both.sum()
            M[i, j] = M[j, i] = srcc(V[both, i], V[both, j]) if both.sum() >= min_shared else np.nan
    return SrccMatrix(list(table.devices), M, N, min_shared)


def plot_heatmap(m: SrccMatrix, path: str | Path, title: str = "Latency SRCC between devices") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n = len(m.devices)
    side = min(14.0, 1.2 + 0.9 * n)  # a sweep of hundreds of devices still makes a readable, small PNG
    fig, ax = plt.subplots(figsize=(side, side * 0.9))
    im = ax.imshow(m.srcc, vmin=min(0.0, float(np.nanmin(m.srcc))), vmax=1.0, cmap="viridis")
    fs = 9 if n <= 16 else max(3.0, 9 * 16 / n)
    ax.set_xticks(range(n), m.devices, rotation=45 if n <= 16 else 90, ha="right" if n <= 16 else "center",
                  fontsize=fs)
    ax.set_yticks(range(n), m.devices, fontsize=fs)
    if n <= 16:  # values written in the cells while they fit
        for i in range(n):
            for j in range(n):
                v = m.srcc[i, j]
                ax.text(j, i, "-" if np.isnan(v) else f"{v:.2f}", ha="center", va="center",
                        color="white" if v < 0.75 else "black", fontsize=9)
    fig.colorbar(im, ax=ax, label="Spearman rank correlation")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
