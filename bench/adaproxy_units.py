"""adaproxy before turn 15 (the proxy's raw per-feature costs, penalty grid 1e-4..1e4) and after (costs in units
of the proxy's mean latency, half-decade grid 1e-9..1e5), side by side on the same samples: SRCC over the whole
table (3,000 cells), each device the target and the rest the sources, k = 5/10/20, 5 draws, both shipped tables.

    python bench/adaproxy_units.py
"""
import numpy as np

import orchestrator.latency.transfer as T
from orchestrator.latency.metrics import srcc
from orchestrator.latency.table import shipped_table
from search_spaces.base import encode_ids
from search_spaces.nb201 import NB201Space

OLD_GRID = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0, 1e3, 1e4)
new_mean, new_grid = T._mean_prediction, T._ADAPROXY_GRID
space = NB201Space()
for name in ("nb201-hwnasbench", "shipped"):
    t = shipped_table(space, name)
    X = encode_ids(space, t.archs)
    res = {"old": [], "new": []}
    for d in t.devices:
        y = t.column(d)
        ok = np.flatnonzero(np.isfinite(y))
        src = T.SourceSet.from_table(t.select([x for x in t.devices if x != d]), space)
        ev = np.random.default_rng(9).choice(ok, min(3000, len(ok)), replace=False)
        for k in (5, 10, 20):
            for draw in range(5):
                pick = np.random.default_rng([draw, k]).choice(ok, k, replace=False)
                for mode in ("old", "new"):
                    if mode == "old":
                        T._mean_prediction, T._ADAPROXY_GRID = (lambda m, X: 1.0), OLD_GRID
                    else:
                        T._mean_prediction, T._ADAPROXY_GRID = new_mean, new_grid
                    p = T.adapt("adaproxy", src, X[pick], y[pick], np.random.default_rng(0))
                    res[mode].append((k, srcc(p.predict(X[ev]), y[ev])))
    for k in (5, 10, 20):
        o = np.array([s for kk, s in res["old"] if kk == k])
        n = np.array([s for kk, s in res["new"] if kk == k])
        print(f"{name:17s} k={k:2d}: old mean SRCC {o.mean():.4f} (min {o.min():.3f}), new {n.mean():.4f} "
              f"(min {n.min():.3f}); new-old mean {np.mean(n - o):+.4f}, new better in {np.mean(n > o + 1e-9):.0%},"
              f" worse in {np.mean(n < o - 1e-9):.0%} of {len(o)}")
