"""The exact predicted Pareto front by mixed-integer programming (epsilon-constraint).

When accuracy and latency are both *additive* over a space's encoding
(``w @ x + b``: an operator lookup table, a ridge model on one-hot features),
the best architecture under a latency bound is an integer program over the
choices (as in HAO and LANA). Walking the bound down from the most accurate
architecture gives every point of the predicted front:

1. the most accurate architecture (ties: the fastest);
2. repeatedly: the most accurate one strictly faster than the last point found,
   then the fastest one at that accuracy, until none is left.

Each space describes itself as a :class:`MilpModel`: binary variables, linear
constraints that make them a valid architecture, a linear map to the encoding
(``x = E @ v``) and a decoder. NB201's live-edge features are products of
reachability indicators, linearised exactly (AND/OR of binaries), so the model
is exact for the 60-feature encoding. Solved with HiGHS through
``scipy.optimize.milp`` with a zero optimality gap.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from orchestrator.errors import ConfigError
from orchestrator.registry import Registry
from search_spaces.base import SearchSpace, encode_ids

log = logging.getLogger(__name__)

Affine = dict[int, float]  # variable index -> coefficient; key -1 holds the constant


@dataclass
class MilpModel:
    """Binary variables ``v``, constraints ``lb <= A v <= ub``, encoding ``x = E v``, decoder ``v -> arch id``."""

    n_vars: int
    rows: list[tuple[Affine, float, float]]
    E: np.ndarray
    decode: Callable[[np.ndarray], str]

    def matrix(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        A = np.zeros((len(self.rows), self.n_vars))
        lb = np.empty(len(self.rows))
        ub = np.empty(len(self.rows))
        for r, (expr, lo, hi) in enumerate(self.rows):
            const = expr.get(-1, 0.0)
            for i, c in expr.items():
                if i >= 0:
                    A[r, i] += c
            lb[r], ub[r] = lo - const, hi - const
        return A, lb, ub


class _Builder:
    """Binary variables and linear rows, with exact AND / OR of binary affine expressions."""

    def __init__(self) -> None:
        self.n = 0
        self.rows: list[tuple[Affine, float, float]] = []

    def var(self) -> int:
        self.n += 1
        return self.n - 1

    def row(self, expr: Affine, lo: float, hi: float) -> None:
        self.rows.append((expr, lo, hi))

    @staticmethod
    def lin(*terms: tuple[Affine, float]) -> Affine:
        out: Affine = {}
        for expr, s in terms:
            for k, v in expr.items():
                out[k] = out.get(k, 0.0) + s * v
        return out

    def and_(self, factors: Sequence[Affine]) -> Affine:
        if not factors:
            return {-1: 1.0}
        if len(factors) == 1:
            return factors[0]
        w = self.var()
        for f in factors:  # w <= f
            self.row(self.lin(({w: 1.0}, 1.0), (f, -1.0)), -np.inf, 0.0)
        # w >= sum f - (n - 1)
        self.row(self.lin(({w: 1.0}, 1.0), *((f, -1.0) for f in factors)), -(len(factors) - 1), np.inf)
        return {w: 1.0}

    def or_(self, terms: Sequence[Affine]) -> Affine:
        if len(terms) == 1:
            return terms[0]
        w = self.var()
        for t in terms:  # w >= t
            self.row(self.lin(({w: 1.0}, 1.0), (t, -1.0)), 0.0, np.inf)
        self.row(self.lin(({w: 1.0}, 1.0), *((t, -1.0) for t in terms)), -np.inf, 0.0)  # w <= sum t
        return {w: 1.0}


MODELS: Registry[Callable[[SearchSpace], MilpModel]] = Registry("MILP space model")


@MODELS.register("nb201", help="one-hot op per edge plus live-edge features via exact reachability")
def nb201_model(space: SearchSpace) -> MilpModel:
    from search_spaces.nb201 import EDGES, OPS

    b = _Builder()
    n_ops = len(OPS)
    z = [[b.var() for _ in OPS] for _ in EDGES]
    for e in range(len(EDGES)):
        b.row({z[e][o]: 1.0 for o in range(n_ops)}, 1.0, 1.0)
    none = OPS.index("none")
    active = {EDGES[e]: {-1: 1.0, z[e][none]: -1.0} for e in range(len(EDGES))}  # 1 - z[e, none]
    # reach_in[j]: node j reachable from the input; reach_out[i]: node i reaches the output
    reach_in: dict[int, Affine] = {0: {-1: 1.0}}
    for j in (1, 2):  # node 3 is the output
        reach_in[j] = b.or_([b.and_([reach_in[i], active[(jj, i)]]) if i else active[(jj, i)]
                             for (jj, i) in EDGES if jj == j])
    reach_out: dict[int, Affine] = {3: {-1: 1.0}}
    for i in (2, 1):  # node 0 is the input
        reach_out[i] = b.or_([b.and_([reach_out[j], active[(j, ii)]]) if j != 3 else active[(j, ii)]
                              for (j, ii) in EDGES if ii == i])
    half = len(EDGES) * n_ops
    cols: list[tuple[int, Affine]] = []
    for e, (j, i) in enumerate(EDGES):
        for o in range(n_ops):
            cols.append((e * n_ops + o, {z[e][o]: 1.0}))
            if o != none:
                path = [f for f in (reach_in[i], reach_out[j]) if f != {-1: 1.0}]
                cols.append((half + e * n_ops + o, b.and_([{z[e][o]: 1.0}, *path])))
    E = np.zeros((space.encoding_size, b.n))
    for feat, expr in cols:
        for k, c in expr.items():
            if k < 0:
                raise AssertionError("an encoding feature with a constant part")  # never: products of vars
            E[feat, k] += c

    def decode(v: np.ndarray) -> str:
        ops = [OPS[int(np.argmax([v[z[e][o]] for o in range(n_ops)]))] for e in range(len(EDGES))]
        return space.arch_id({"ops": ops})

    return MilpModel(b.n, b.rows, E, decode)


@MODELS.register("mobilenetv3", help="one-hot depth per stage; kernel and expand per slot, active below depth")
def mobilenet_model(space: SearchSpace) -> MilpModel:
    from search_spaces.mobilenet import DEPTHS, EXPANDS, KERNELS, MAX_DEPTH, N_STAGES

    b = _Builder()
    per_stage = len(DEPTHS) + MAX_DEPTH * (len(KERNELS) + len(EXPANDS))
    E = np.zeros((space.encoding_size, N_STAGES * per_stage))
    idx: list[tuple[list[int], list[list[int]], list[list[int]]]] = []
    for s in range(N_STAGES):
        base = s * per_stage
        d = [b.var() for _ in DEPTHS]
        b.row({v: 1.0 for v in d}, 1.0, 1.0)
        ks, es = [], []
        for slot in range(MAX_DEPTH):
            on = {d[i]: 1.0 for i, depth in enumerate(DEPTHS) if depth > slot}  # slot used at this depth
            k = [b.var() for _ in KERNELS]
            e = [b.var() for _ in EXPANDS]
            for group in (k, e):
                b.row(b.lin(({v: 1.0 for v in group}, 1.0), (on, -1.0)), 0.0, 0.0)
            ks.append(k)
            es.append(e)
        idx.append((d, ks, es))
        for i, v in enumerate(d):
            E[base + i, v] = 1.0
        for slot in range(MAX_DEPTH):
            off = base + len(DEPTHS) + slot * (len(KERNELS) + len(EXPANDS))
            for i, v in enumerate(ks[slot]):
                E[off + i, v] = 1.0
            for i, v in enumerate(es[slot]):
                E[off + len(KERNELS) + i, v] = 1.0
    resolutions = list(getattr(space, "resolutions", None) or ())  # elastic resolution: a one-hot after the stages
    res = [b.var() for _ in resolutions]
    if res:
        b.row({v: 1.0 for v in res}, 1.0, 1.0)
        E = np.hstack([E, np.zeros((E.shape[0], len(res)))])
        for i, v in enumerate(res):
            E[N_STAGES * per_stage + i, v] = 1.0
    assert b.n == E.shape[1]

    def decode(v: np.ndarray) -> str:
        arch: dict[str, Any] = {"d": [], "ks": [], "e": []}
        for d, ks, es in idx:
            depth = DEPTHS[int(np.argmax(v[d]))]
            arch["d"].append(depth)
            arch["ks"].append([KERNELS[int(np.argmax(v[ks[s]]))] for s in range(depth)])
            arch["e"].append([EXPANDS[int(np.argmax(v[es[s]]))] for s in range(depth)])
        if res:
            arch["r"] = resolutions[int(np.argmax(v[res]))]
        return space.arch_id(arch)

    return MilpModel(b.n, b.rows, E, decode)


@MODELS.register("fbnet", help="one block per layer: a one-hot per layer (the encoding itself)")
def layerwise_model(space: SearchSpace) -> MilpModel:
    """A layer-wise space (``space.choices()``: the blocks of each layer) whose encoding is the layer-major
    one-hot of its choices: one binary per (layer, block), one per layer."""
    choices = [tuple(c) for c in space.choices()]
    b = _Builder()
    z = [[b.var() for _ in ch] for ch in choices]
    for row in z:
        b.row({v: 1.0 for v in row}, 1.0, 1.0)
    if b.n != space.encoding_size:
        raise ConfigError(f"space {space.name!r}: its encoding is not the one-hot of its choices")
    E = np.eye(b.n)

    def decode(v: np.ndarray) -> str:
        return space.arch_id({"ops": [ch[int(np.argmax(v[row]))] for ch, row in zip(choices, z, strict=True)]})

    return MilpModel(b.n, b.rows, E, decode)


def table_model(space: SearchSpace, arch_ids: Sequence[str]) -> MilpModel:
    """Choose exactly one of ``arch_ids`` (a latency table's rows): the search domain 'table'."""
    ids = list(arch_ids)
    if not ids:
        raise ConfigError("MILP over a table: the table has no architectures")
    X = encode_ids(space, ids)

    def decode(v: np.ndarray) -> str:
        return ids[int(np.argmax(v))]

    return MilpModel(len(ids), [({i: 1.0 for i in range(len(ids))}, 1.0, 1.0)], X.T.astype(float), decode)


def space_model(space: SearchSpace) -> MilpModel:
    return MODELS.get(space.name)(space)


@dataclass
class FrontPoint:
    arch_id: str
    accuracy: float
    latency_ms: float


@dataclass
class MilpFront:
    points: list[FrontPoint]
    solves: int
    seconds: float
    complete: bool  # False: stopped at max_points
    stats: dict[str, float] = field(default_factory=dict)


class _Solver:
    def __init__(self, model: MilpModel, time_limit: float) -> None:
        from scipy.optimize import LinearConstraint

        self.model = model
        A, lb, ub = model.matrix()
        self.base = LinearConstraint(A, lb, ub)
        self.options = {"mip_rel_gap": 0.0, "time_limit": time_limit, "disp": False}
        self.solves = 0

    def solve(self, c: np.ndarray, extra: list[tuple[np.ndarray, float, float]]) -> np.ndarray | None:
        from scipy.optimize import LinearConstraint, milp

        cons = [self.base] + [LinearConstraint(a[None, :], lo, hi) for a, lo, hi in extra]
        res = milp(c, integrality=np.ones(self.model.n_vars), bounds=(0, 1), constraints=cons,
                   options=self.options)
        self.solves += 1
        if res.status == 2:  # infeasible
            return None
        if res.status != 0 or res.x is None:
            raise RuntimeError(f"MILP solver stopped without an optimum: {res.message}")
        return np.round(res.x)


@contextlib.contextmanager
def _quiet_stdout() -> Iterator[None]:
    """HiGHS's MIP code prints debug lines to the process's stdout (fd 1) whatever its options; hide them."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # no real stdout (captured): nothing to hide
        yield
        return
    sys.stdout.flush()
    saved = os.dup(fd)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), fd)
            yield
    finally:
        os.dup2(saved, fd)
        os.close(saved)


def milp_front(model: MilpModel, acc_coef: np.ndarray, acc_intercept: float, lat_coef: np.ndarray,
               lat_intercept: float, *, max_points: int = 500, grid: int | None = None,
               time_limit: float = 60.0, max_latency: float | None = None) -> MilpFront:
    """The front of (``acc_coef @ x + b``, ``lat_coef @ x + c``), most accurate first.

    ``grid`` None: every point, walking the latency bound down (stops at ``max_points``: a large space's
    additive front can have thousands). ``grid`` n: the most accurate architecture under n latency bounds
    evenly spaced between the fastest and the most accurate one (each point exactly Pareto-optimal).
    ``max_latency``: only architectures whose modelled latency is at most this (a latency budget).
    """
    with _quiet_stdout():
        return _milp_front(model, acc_coef, acc_intercept, lat_coef, lat_intercept, max_points, grid, time_limit,
                           max_latency)


def _milp_front(model: MilpModel, acc_coef: np.ndarray, acc_intercept: float, lat_coef: np.ndarray,
                lat_intercept: float, max_points: int, grid: int | None, time_limit: float,
                max_latency: float | None = None) -> MilpFront:
    t0 = time.perf_counter()
    acc = model.E.T @ np.asarray(acc_coef, dtype=float)
    lat = model.E.T @ np.asarray(lat_coef, dtype=float)
    s = _Solver(model, time_limit)
    # separations: distinct points differ by more than this (relative to the objectives' ranges)
    tol_a = 1e-9 * max(1.0, float(np.abs(acc).sum()))
    tol_l = 1e-7 * max(1e-12, float(np.abs(lat).sum()))

    def polish(v: np.ndarray) -> np.ndarray:  # the fastest at this accuracy: not weakly dominated
        best = s.solve(lat, [(acc, float(acc @ v) - tol_a, np.inf)])
        return v if best is None else best

    points: list[FrontPoint] = []
    cap = [] if max_latency is None else [(lat, -np.inf, float(max_latency) - float(lat_intercept) + tol_l)]
    v = s.solve(-acc, cap)
    if v is None:
        if cap and s.solve(lat, []) is not None:
            raise ConfigError(f"no architecture meets the latency budget {max_latency} ms under the latency "
                              f"model; raise the budget")
        raise ConfigError("the MILP model has no feasible architecture")
    complete = False
    if grid is not None:
        top = polish(v)
        fastest = s.solve(lat, [])
        assert fastest is not None
        seen: set[str] = set()
        for eps in np.linspace(float(lat @ top), float(lat @ fastest), max(2, grid)):
            w = s.solve(-acc, [(lat, -np.inf, eps + tol_l)])
            if w is None:
                continue
            w = polish(w)
            a = model.decode(w)
            if a not in seen:
                seen.add(a)
                points.append(FrontPoint(a, float(acc @ w + acc_intercept), float(lat @ w + lat_intercept)))
        secs = time.perf_counter() - t0
        log.info("MILP front: %d points on a grid of %d latency bounds, %d solves, %.2fs", len(points), grid,
                 s.solves, secs)
        return MilpFront(points, s.solves, secs, False, {"n_vars": model.n_vars, "n_rows": len(model.rows)})
    while True:
        v = polish(v)
        points.append(FrontPoint(model.decode(v), float(acc @ v + acc_intercept), float(lat @ v + lat_intercept)))
        if len(points) >= max_points:
            break
        nxt = s.solve(-acc, [(lat, -np.inf, float(lat @ v) - tol_l)])
        if nxt is None:
            complete = True
            break
        v = nxt
    secs = time.perf_counter() - t0
    log.info("MILP front: %d points, %d solves, %.2fs%s", len(points), s.solves, secs,
             "" if complete else f" (stopped at max_points={max_points})")
    return MilpFront(points, s.solves, secs, complete, {"n_vars": model.n_vars, "n_rows": len(model.rows)})
