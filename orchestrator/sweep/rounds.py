"""A target's measurements, the rules in one module: how its k split into two rounds, which architectures
each round measures, and how many of them a noisy device measures again.

**The split** (``Rounds.split``): a first round of ``k - round(k_adaptive * k)`` (at least 3) and a second of
the rest; where ``reference_cells`` outnumber the first round, the first round holds them all.

**The first round** (``first_round``, on the driver): the fixed reference cells first (``sweep/reference.py``,
counted in k), then ``pick_k``: part of the rest (``front_share``, ``sweep.k_front``) along the proxy's front
over the whole domain, evenly from its fastest to its most accurate member (both ends: the fast end is where
a wrong ranking costs whole budgets); the rest at evenly spaced ranks of the proxy's predicted latency over
what the target can be measured on (its domain, within its cost limits).

**Refusals**: a device that refuses one architecture (``ArchitectureRefused``: its artefact failed an output
check) measures the rest; the first round is then chosen again without the refused ones (``exclude``) and the
next of its picks not measured yet fill the round up to its k (``pipeline/targets.measure_first_round``).

**The second round** (``propose``, in the target's Ray task): where the front the target's own first-round
predictor finds lives, its fast end twice. An architecture refused there is replaced the same way: ``propose``
again on the driver, without the refused ones (``pipeline/targets.measure_more``).

**The retest** (``Rounds.retest_n``): a device whose measurements are noisy measures up to ``retest`` of the k
again in another order (the test-retest SRCC); at least 3, else none.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

import numpy as np

from orchestrator.latency.transfer import SourceSet
from orchestrator.sweep.target import Encoder, SweepShared, TargetInput, _predicted, front_of

MIN_FIRST = 3  # the first round's least measurements (a decision needs an SRCC)


@dataclass(frozen=True)
class Rounds:
    """A target's measurement settings, grouped (the sweep section's ``k``, ``k_adaptive``, ``k_front``,
    ``reference_cells``, ``retest``)."""

    k: int = 10
    adaptive: float = 0.5  # share of k measured in the second round
    front_share: float = 1.0  # share of the first round along the proxy's front
    reference_cells: int = 0  # of the k, the fixed reference cells (first round)
    retest: int = 10  # measured again on a noisy device

    def split(self) -> tuple[int, int]:
        """(first round, second round) measurements of k."""
        second = min(int(round(self.adaptive * self.k)), self.k - MIN_FIRST)
        first, second = self.k - second, max(0, second)
        if self.reference_cells > first:  # the first round holds every reference cell
            first, second = self.reference_cells, self.k - self.reference_cells
        return first, second

    def retest_n(self, measured: int, deterministic: bool) -> int:
        """How many of the ``measured`` architectures a device measures again (0: none)."""
        n = min(self.retest, measured)
        return n if not deterministic and n >= MIN_FIRST else 0


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


def first_round(shared: SweepShared, name: str, domain: Sequence[str] | None, k: int,
                front_share: float, exclude: Collection[str] = ()) -> tuple[list[str], int]:
    """The first round's ``k`` architectures for target ``name`` (``domain``: what it can be measured on, None
    for any) and how many of them are reference cells: from the shared search domain (or the pool and the
    proxy's front where the domain cannot be listed), within the target's cost limits. ``exclude``: what the
    target's device refused (``ArchitectureRefused``): the round is chosen as if they did not exist."""
    base = shared.search_ids if shared.search_ids is not None else \
        list(dict.fromkeys([*shared.pool_ids, *shared.proxy_front_ids]))
    if domain is not None:
        allowed = set(domain)
        base = [a for a in base if a in allowed]
    if exclude:
        gone = set(exclude)
        base = [a for a in base if a not in gone]
    fits = shared.allowed(base, name)  # what exceeds the device's memory or a cost limit cannot be measured
    base = [a for a, f in zip(base, fits, strict=True) if f]
    ok = set(base)
    refs = [a for a in shared.reference_ids if a in ok][:k]  # the fixed reference cells first, counted in k
    if refs:
        base = [a for a in base if a not in set(refs)]
    enc = Encoder(shared.space_spec.build(), shared.search_ids, shared.search_X)
    proxy_ms = np.asarray(shared.proxy_predictor.predict(enc(base)), dtype=float)
    return refs + pick_k(base, proxy_ms, k - len(refs), shared.proxy_front_ids, front_share), len(refs)


def _evenly(ids: Sequence[str], n: int) -> list[str]:
    if n <= 0 or not ids:
        return []
    return [ids[i] for i in np.unique(np.round(np.linspace(0, len(ids) - 1, min(n, len(ids)))).astype(int))]


def propose(shared: SweepShared, target: TargetInput, sources: SourceSet | None, n: int,
            exclude: Collection[str] = ()) -> list[str]:
    """The second round's measurements: ``n`` architectures where the target's predicted front lives, not
    measured yet: the front's fast end twice (a wrong prediction there leaves a budget with nothing that
    fits), the rest evenly along it; where the front has fewer, the next non-dominated layers. ``exclude``:
    what the target's device refused (``ArchitectureRefused``), proposed as if it did not exist."""
    space = shared.space_spec.build()
    p = _predicted(shared, target, sources, space, Encoder(space, shared.search_ids, shared.search_X))
    options = list(dict.fromkeys([*shared.pool_ids, *p.searched]))
    pred = p.predict(options)
    if shared.settings.budget_ms is not None:
        options = [a for a, v in zip(options, pred, strict=True) if v <= shared.settings.budget_ms]
        pred = p.predict(options)
    done = {*target.k_ids, *exclude}
    allowed = set(target.domain) if target.domain is not None else None
    fits = shared.allowed(options, target.name)
    keep = [i for i, a in enumerate(options) if a not in done and (allowed is None or a in allowed) and fits[i]]
    left, acc, lat = [options[i] for i in keep], shared.oracle.values([options[i] for i in keep]), pred[keep]
    picked: list[str] = []
    while left and len(picked) < n:
        layer = front_of(acc, lat)
        ids = [left[i] for i in layer]
        if not picked:  # the front itself
            fast = ids[:min(2, n - 1)] if n >= 3 else []
            picked += fast + _evenly(ids[len(fast):], n - len(fast))
        else:
            picked += _evenly(ids, n - len(picked))
        rest = np.setdiff1d(np.arange(len(left)), layer)
        left, acc, lat = [left[i] for i in rest], acc[rest], lat[rest]
    return picked[:n]
