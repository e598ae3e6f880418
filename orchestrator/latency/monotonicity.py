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
    srcc: np.ndarray  # (d, d)
    shared: np.ndarray  # (d, d) number of architectures measured on both

    def proxy(self, criterion: str = "min") -> tuple[str, float]:
        """The device with the highest minimum (or mean) SRCC to the others, and that value."""
        if criterion not in PROXY_CRITERIA:
            raise ValueError(f"proxy criterion {criterion!r} is not one of {PROXY_CRITERIA}")
        d = len(self.devices)
        if d < 2:
            raise TableError("choosing a proxy needs at least two devices")
        off = ~np.eye(d, dtype=bool)
        vals = [np.nanmin(self.srcc[i][off[i]]) if criterion == "min" else np.nanmean(self.srcc[i][off[i]])
                for i in range(d)]
        i = int(np.nanargmax(vals))
        return self.devices[i], float(vals[i])

    def format(self) -> str:
        w = max(8, *(len(d) for d in self.devices)) + 1
        lines = [" " * w + "".join(f"{d:>{w}s}" for d in self.devices)]
        for i, d in enumerate(self.devices):
            lines.append(f"{d:<{w}s}" + "".join(f"{v:>{w}.3f}" for v in self.srcc[i]))
        return "\n".join(lines)


def srcc_matrix(table: LatencyTable, min_shared: int = 3) -> SrccMatrix:
    """Pairwise SRCC over the architectures each pair of devices shares. Columns measured on every row are
    ranked once and correlated in one product (a table of hundreds of devices in well under a second); pairs
    with a gap are computed one by one."""
    from scipy.stats import rankdata

    V = table.values
    d = len(table.devices)
    M = np.eye(d)
    N = np.zeros((d, d), dtype=int)
    ok = ~np.isnan(V)
    full = ok.all(axis=0) if len(V) >= min_shared else np.zeros(d, dtype=bool)
    idx = np.flatnonzero(full)
    if len(idx) >= 2:
        R = rankdata(V[:, idx], axis=0)
        R -= R.mean(axis=0)
        norm = np.sqrt((R * R).sum(axis=0))
        const = norm == 0  # a constant column ranks nothing: SRCC 0 (as metrics.srcc)
        norm[const] = 1.0
        C = (R.T @ R) / np.outer(norm, norm)
        C[const, :] = 0.0
        C[:, const] = 0.0
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
    return SrccMatrix(list(table.devices), M, N)


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
