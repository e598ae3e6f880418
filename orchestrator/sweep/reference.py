"""Reference cells: a fixed set of architectures measured on every target as part of its first round.

HELP (Lee et al., NeurIPS 2021) measures a fixed set of reference architectures on every device (its
"hardware embedding") beside the target's own samples. ``sweep.reference_cells: n`` does the same: the n
cells are chosen once per run, by a rule that depends on neither the seed, the proxy nor the target, so
every target measures the same cells and every source (a column of the latency table) knows them:

1. candidates: the cells of the search domain that every column of the latency table has measured (all
   of them where there is no table), within the search's cost limits;
2. the candidates sorted by the network's multiply-adds (``macs_m``, a property of the network, not of a
   device), ties broken by arch id;
3. the n cells at evenly spaced ranks of that order, both ends included.

They are counted in k (the first round is the reference cells, then the usual picks) and the transfer
learns from them like from any measurement; a target that cannot run one (its memory limit, a table
row it lacks) measures one fewer, and its report says how many it measured (``reference_cells``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from orchestrator.latency.table import LatencyTable
from search_spaces.base import SpaceSpec
from search_spaces.costs import CostModel


def reference_cells(ids: Sequence[str], n: int, spec: SpaceSpec, table: LatencyTable | None = None,
                    limits: Mapping[str, float] | None = None, costs: CostModel | None = None) -> list[str]:
    """The ``n`` reference cells of ``ids`` (canonical arch ids of the search domain), in multiply-add order.

    ``table``: only cells measured on all its columns are candidates; ``limits``: cost limits every cell must
    meet. Deterministic: the same arguments give the same cells. Fewer than ``n`` only if fewer candidates
    exist.
    """
    if n <= 0:
        return []
    cand = list(dict.fromkeys(ids))
    if table is not None:
        full = ~np.isnan(table.values).any(axis=1)
        known = {a for a, ok in zip(table.archs, full, strict=True) if ok}
        cand = [a for a in cand if a in known]
    costs = costs if costs is not None else CostModel(spec)
    if limits:
        cand = [a for a, ok in zip(cand, costs.within(cand, dict(limits)), strict=True) if ok]
    if len(cand) <= n:
        return sorted(cand)
    macs = costs.matrix(cand, ("macs_m",))[:, 0]
    order = sorted(range(len(cand)), key=lambda i: (float(macs[i]), cand[i]))
    pos = np.unique(np.round(np.linspace(0, len(cand) - 1, n)).astype(int))
    return [cand[order[p]] for p in pos]
