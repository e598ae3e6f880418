"""Conformance kits parametrised from the registries (as Optuna's sampler test kit and timm's model tests are):
every registered search algorithm, transfer method and accuracy source gets the same battery, and a registered
entry without a case here fails. (Spaces and device types: tests/test_contracts.py; latency predictors:
tests/test_predictors.py.) Entries that need Ray or training run in the slow tier.
"""

from __future__ import annotations

import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
import torch

from orchestrator.config import AccuracySection
from orchestrator.latency.metrics import srcc
from orchestrator.latency.table import shipped_accuracy
from orchestrator.latency.transfer import TRANSFERS, SourceSet, adapt
from orchestrator.registry import Registry
from orchestrator.search.algorithms import ALGORITHMS, SearchProblem, SearchResult, SearchSettings, run_search
from orchestrator.search.driver import TableDomain
from orchestrator.search.zero_cost import PROXIES
from orchestrator.supernet.data import DATASETS, DataConfig, load_dataset
from orchestrator.sweep.decision import decide
from search_spaces.base import encode_ids

# -- every registry has a kit ---------------------------------------------------------------------------------

# the kind of every Registry in the code base -> the kit that covers each of its entries
KITS = {
    "search space": "tests/test_contracts.py (SPACE_OPTIONS)",
    "device": "tests/test_contracts.py (DEVICE_CASES)",
    "device name prefix": "tests/test_contracts.py (DEVICE_CASES)",
    "search algorithm": "tests/test_conformance.py (ALGORITHM_CASES)",
    "transfer method": "tests/test_conformance.py::test_transfer_method_on_a_perfectly_ranked_target",
    "accuracy source": "tests/test_conformance.py (ACCURACY_CASES)",
    "predictor": "tests/test_predictors.py (parametrised over PREDICTORS)",
    "zero-cost proxy": "tests/test_conformance.py::test_zero_cost_proxy",
    "MILP space model": "tests/test_conformance.py::test_every_space_has_a_milp_model",
    "dataset": "tests/test_conformance.py (DATASET_CASES)",
    "DNAS space": "tests/test_conformance.py (DNAS_VIEW_OPTIONS)",
    "space with a default accuracy source": "tests/test_conformance.py::test_every_default_source_rule_resolves",
    "space with a shipped latency table": "tests/test_conformance.py (SHIPPED_LATENCY_OPTIONS)",
}


def all_registries() -> dict[str, Registry]:
    """Every Registry at module level in the package, once the command line (which imports every component) and
    the device types are loaded: ``{"module.NAME": registry}``."""
    import sys

    import orchestrator.cli  # noqa: F401
    import orchestrator.search.milp  # noqa: F401
    import orchestrator.search.zero_cost  # noqa: F401
    import orchestrator.supernet.data  # noqa: F401
    from orchestrator.latency.devices import DeviceCatalog
    from search_spaces.nb201 import NB201Space

    DeviceCatalog(NB201Space())  # loads the device types
    return {f"{name}.{attr}": obj for name, mod in list(sys.modules.items())
            if name.split(".")[0] in ("orchestrator", "search_spaces")
            for attr, obj in list(vars(mod).items()) if isinstance(obj, Registry)}


def test_every_registry_has_a_conformance_kit():
    regs = all_registries()
    kinds = {r.kind for r in regs.values()}
    assert {"search space", "device", "search algorithm", "transfer method", "dataset"} <= kinds  # found them
    missing = sorted(f"{r.kind!r} ({where})" for where, r in regs.items() if r.kind not in KITS)
    assert not missing, f"registries {missing} have no conformance kit: add one and list it in KITS"


# -- search algorithms ----------------------------------------------------------------------------------------

@dataclass
class AlgorithmCase:
    """A small problem an algorithm can solve, the settings, and the most new evaluations it may make."""

    problem: SearchProblem
    settings: SearchSettings
    max_evaluated: int
    recorder: Any = None


class RecordingAccuracy:
    """A real accuracy source, recording every architecture it is asked to evaluate."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.name = inner.name
        self.asked: list[str] = []

    def evaluate(self, arch_ids):
        self.asked.extend(arch_ids)
        yield from self.inner.evaluate(arch_ids)

    def oracle(self, known=None):
        return self.inner.oracle(known)


@pytest.fixture(scope="module")
def nb201_tables(space, shipped):
    from orchestrator.latency.predictors import make_predictor
    from orchestrator.search.accuracy import TableAccuracy

    acc = TableAccuracy(space, shipped_accuracy("test_acc_cifar10_12ep", "nb201-hwnasbench"))
    lat_model = make_predictor("additive").fit(encode_ids(space, shipped.archs), shipped.column("pixel3"))
    return acc, lat_model, acc.oracle().additive


DOMAIN = 40  # table cells the small problems search


def nb201_case(space, shipped, tables, n_trials: int = 24) -> AlgorithmCase:
    """NB201 on 40 cells of the shipped table: table accuracy, an additive latency model of pixel3, a latency
    budget at the cells' median."""
    acc, lat_model, acc_model = tables
    rec = RecordingAccuracy(acc)

    def latency(ids):
        return np.asarray(lat_model.predict(encode_ids(space, list(ids))), dtype=float)

    cells = shipped.archs[:DOMAIN]
    problem = SearchProblem(space, rec, latency, domain=TableDomain(space, cells),
                            latency_budget_ms=float(np.median(latency(cells))), latency_model=lat_model,
                            accuracy_model=acc_model, label="conformance")
    return AlgorithmCase(problem, SearchSettings(n_trials=n_trials, population=8, seed=0), n_trials, rec)


def dnas_case(space, shipped, tables) -> AlgorithmCase:
    """FBNet with the pixel3 lookup table, accuracy minus the parameters (M), a tiny supernet on digits."""
    from orchestrator.latency.devices import DeviceCatalog
    from orchestrator.latency.fbnet_data import shipped_lut_path
    from orchestrator.search.dnas import DnasConfig
    from orchestrator.supernet.data import DataConfig
    from search_spaces import get_space
    from search_spaces.costs import CostModel

    fb = get_space("fbnet")
    dev = DeviceCatalog(fb).make("lut:pixel3", {"path": str(shipped_lut_path())})

    class MinusParams:
        name = "minus_params"
        costs = CostModel(fb.spec())

        def evaluate(self, ids):
            yield from zip(ids, map(float, -self.costs.values(list(ids), "params_m")), strict=True)

    rec = RecordingAccuracy(MinusParams())
    cfg = DnasConfig(lambdas=[10.0], warmup_epochs=0, epochs=1, batch_size=16, max_steps=1, arch_lr=0.3,
                     data=DataConfig(name="digits", resolution=8, max_train=64),
                     supernet_options={"width_mult": 0.1, "resolution": 8})
    problem = SearchProblem(fb, rec, dev.latency_ms, latency_model=dev.additive(), label="conformance")
    return AlgorithmCase(problem, SearchSettings(seed=0, dnas=cfg), 1, rec)


# one factory per registered algorithm; a new algorithm without one fails test_every_algorithm_has_a_case
ALGORITHM_CASES: dict[str, Callable[..., AlgorithmCase]] = {
    "nsga2": nb201_case,
    "tpe": nb201_case,
    "random": nb201_case,
    "milp": nb201_case,
    "exhaustive": lambda *a: AlgorithmCase(**{**nb201_case(*a).__dict__, "max_evaluated": DOMAIN}),
    "dnas": pytest.param(dnas_case, marks=pytest.mark.slow),
}


def _algorithm_params():
    out = []
    for name in ALGORITHMS.names():
        c = ALGORITHM_CASES.get(name)
        marks = c.marks if c is not None and not callable(c) else ()
        out.append(pytest.param(name, marks=marks, id=name))
    return out


def _algorithm_case(name, *args) -> AlgorithmCase:
    if name not in ALGORITHM_CASES:
        pytest.fail(f"search algorithm {name!r} is registered but has no case in ALGORITHM_CASES")
    c = ALGORITHM_CASES[name]
    return (c if callable(c) else c.values[0])(*args)


def test_every_algorithm_has_a_case():
    missing = sorted(set(ALGORITHMS.names()) - set(ALGORITHM_CASES))
    assert not missing, f"search algorithm(s) {missing} have no case: add a small problem to ALGORITHM_CASES"
    assert not set(ALGORITHM_CASES) - set(ALGORITHMS.names()), "ALGORITHM_CASES names an unregistered algorithm"


@pytest.mark.parametrize("name", _algorithm_params())
def test_algorithm_solves_a_small_problem(name, space, shipped, nb201_tables):
    """Candidates of the domain, each with the source's accuracy and the problem's latency, feasible exactly
    when within the latency budget; no architecture evaluated twice, at most the case's evaluations; at least one
    feasible candidate; the same seed, the same candidates."""
    case = _algorithm_case(name, space, shipped, nb201_tables)
    p = case.problem
    res = run_search(p, name, case.settings)
    assert isinstance(res, SearchResult) and res.candidates
    ids = [c.arch_id for c in res.candidates]
    assert all(p.space.arch_id(p.space.parse(a)) == a for a in ids)
    if p.domain is not None:
        assert set(ids) <= set(p.domain.ids)
    asked = case.recorder.asked
    assert len(asked) == len(set(asked)) == res.evaluated <= case.max_evaluated, (len(asked), res.evaluated)
    truth = dict(case.recorder.inner.evaluate(ids))
    assert [c.accuracy for c in res.candidates] == pytest.approx([truth[a] for a in ids])
    lat = np.asarray(p.latency(ids), dtype=float)
    np.testing.assert_allclose([c.latency_ms for c in res.candidates], lat, rtol=1e-6)
    budget = p.latency_budget_ms
    assert [c.feasible for c in res.candidates] == [bool(budget is None or t <= budget) for t in lat]
    assert res.feasible() and res.seconds > 0
    again = run_search(_algorithm_case(name, space, shipped, nb201_tables).problem, name, case.settings)
    assert [c.arch_id for c in again.candidates] == ids


# -- DNAS views -------------------------------------------------------------------------------------------------

# tiny options of each space DNAS searches; a view registered without an entry fails test_every_dnas_view_has_options
DNAS_VIEW_OPTIONS: dict[str, dict[str, Any]] = {
    "fbnet": {"width_mult": 0.1, "resolution": 8, "num_classes": 10},
    "nb201": {"channels": 4, "cells_per_stage": 1, "resolution": 8},
}


def test_every_dnas_view_has_options():
    from orchestrator.search.dnas import VIEWS

    assert set(VIEWS.names()) == set(DNAS_VIEW_OPTIONS), "list each registered DNAS view in DNAS_VIEW_OPTIONS"


@pytest.mark.parametrize("name", sorted(DNAS_VIEW_OPTIONS))
def test_dnas_view_mixes_exactly_the_architecture_and_tabulates_latency(name):
    """A view's mixed supernet with one-hot weights is the architecture's single path; the ids it derives are the
    space's; its latency table has one row per layer and one column per choice, and its additive latency
    (table sum + base) reproduces an additive latency of the space's encoding on sampled architectures."""
    from orchestrator.latency.predictors import make_predictor
    from orchestrator.search.dnas import dnas_view
    from search_spaces import get_space

    space = get_space(name, **DNAS_VIEW_OPTIONS[name])
    view = dnas_view(space)
    choices = view.choices()
    rng = np.random.default_rng(0)
    ids = list(dict.fromkeys(space.arch_id(space.sample(rng)) for _ in range(300)))
    net = view.build_supernet().eval()
    x = torch.randn(2, *view.input_shape()[1:])
    for a in ids[:2]:
        ops = space.parse(a)["ops"]
        w = torch.zeros(len(choices), max(map(len, choices)))
        for layer, op in enumerate(ops):
            w[layer, choices[layer].index(op)] = 1.0
        assert view.arch_id({"ops": ops}) == a
        with torch.no_grad():
            torch.testing.assert_close(net.forward_mixed(x, w), net(x, {"ops": ops}), rtol=1e-4, atol=1e-5)
    onehot = np.array([[float(o == c) for layer, o in enumerate(space.parse(a)["ops"]) for c in choices[layer]]
                       for a in ids])
    truth = onehot @ rng.uniform(0.0, 1.0, onehot.shape[1]) + 2.0  # additive per (layer, choice)
    model = make_predictor("additive", alpha=1e-9).fit(encode_ids(space, ids), truth)

    def latency(q):
        return model.predict(encode_ids(space, list(q)))

    lut, base = view.latency_table(model, latency, ids)
    assert lut.shape == (len(choices), max(map(len, choices)))
    idx = np.array([[choices[layer].index(o) for layer, o in enumerate(space.parse(a)["ops"])] for a in ids])
    np.testing.assert_allclose(lut[np.arange(len(choices))[None, :], idx].sum(axis=1) + base, truth, rtol=1e-5,
                               atol=1e-5)


# -- transfer methods -----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def perfect(space, shipped):
    """Sources: the shipped devices but pixel3; the target: 3 x raspi4 + 0.5 ms, a perfectly ranked copy of one
    source, sampled on 20 cells."""
    src = SourceSet.from_table(shipped.select([d for d in shipped.devices if d != "pixel3"]), space)
    X = encode_ids(space, shipped.archs)
    y = 3.0 * shipped.column("raspi4") + 0.5
    pick = np.random.default_rng(3).choice(len(y), 20, replace=False)
    return src, X, y, pick


@pytest.mark.parametrize("method", TRANSFERS.names())
def test_transfer_method_on_a_perfectly_ranked_target(method, perfect):
    """A target that one source ranks perfectly: the transferred predictor ranks the k samples with SRCC 1 (to
    0.985: at most one adjacent pair of the 20 swapped, 0.9895), the whole table with SRCC >= 0.95, predicts
    positive finite latencies, and the sweep's decision on it is reuse (bound rule, threshold 0.9).

    0.985, not 0.99, since turn 15: adaproxy's penalty is now on costs in units of the proxy's mean latency
    (unit-free), and its leave-one-out picks a penalty that leaves one adjacent swap among these 20 (the
    proxy is the source's additive fit, which does not rank the source perfectly). Its SRCC over the whole
    shipped tables, leave one device out, k 5/10/20, 5 draws, moved by -0.0025 to +0.0006 (docs/benchmarks.md)."""
    src, X, y, pick = perfect
    pred = adapt(method, src, X[pick], y[pick], np.random.default_rng(0))
    on_k = np.asarray(pred.predict(X[pick]), dtype=float)
    everywhere = np.asarray(pred.predict(X), dtype=float)
    assert everywhere.shape == (len(X),) and np.all(np.isfinite(everywhere)) and np.all(everywhere > 0)
    assert srcc(on_k, y[pick]) >= 0.985
    assert srcc(everywhere, y) >= 0.95
    d = decide(on_k, y[pick], threshold=0.9, rule="bound", confidence=0.9, rng=np.random.default_rng(0))
    assert d.decision == "reuse" and d.srcc_k >= 0.985 and d.srcc_lb >= 0.9, d


# -- accuracy sources -----------------------------------------------------------------------------------------

def registered_accuracy_sources() -> list[str]:
    """The accuracy sources registered (``pipeline.accuracy.SOURCES``)."""
    from orchestrator.pipeline.accuracy import SOURCES

    return SOURCES.names()


def test_the_config_offers_exactly_the_registered_accuracy_sources():
    from orchestrator.pipeline.default_source import DEFAULT

    offered = set(typing.get_args(AccuracySection.model_fields["source"].annotation))
    assert offered == {DEFAULT, *registered_accuracy_sources()}
    assert DEFAULT not in registered_accuracy_sources()  # 'default' resolves to a source, it is none itself


def test_every_default_source_rule_resolves():
    """Every space's default rules name a registered space, source and datasets, and a config naming no source
    with each of those datasets resolves to the rule's source (a dataset outside every rule: the fallback)."""
    from orchestrator.pipeline.default_source import DEFAULT, DEFAULTS, FALLBACK, choose_source
    from search_spaces.base import SPACES

    assert DEFAULTS.names(), "no space declares a default accuracy source"
    for space in DEFAULTS.names():
        assert space in SPACES.names()
        covered = set()
        for rule in DEFAULTS.get(space):
            assert rule.source in registered_accuracy_sources() and rule.data <= set(DATASETS.names())
            assert rule.evidence
            for data in sorted(rule.data - covered):
                acc = AccuracySection.model_validate({"source": DEFAULT, "supernet": {"data": {"name": data}}})
                choice = choose_source(space, acc)
                assert (choice.source, choice.by_default) == (rule.source, True), (space, data, choice)
            covered |= rule.data
        for data in sorted(set(DATASETS.names()) - covered):
            acc = AccuracySection.model_validate({"source": DEFAULT, "supernet": {"data": {"name": data}}})
            assert choose_source(space, acc).source == FALLBACK


# -- shipped latency tables -----------------------------------------------------------------------------------

# the options of the network each space's shipped latencies measured (its table is None for any other)
SHIPPED_LATENCY_OPTIONS: dict[str, dict[str, Any]] = {"nb201": {}, "fbnet": {}, "mobilenetv3": {"resolutions": "ofa"}}


def _shipped_latency_cases() -> list[tuple[str, str]]:
    from orchestrator.latency.shipped_tables import SHIPPED_LATENCY

    return [(space, name) for space in SHIPPED_LATENCY.names() for name in SHIPPED_LATENCY.get(space).names]


@pytest.mark.parametrize("space_name, name", _shipped_latency_cases())
def test_shipped_latency_table(space_name, name):
    """Each table a space declares (``SHIPPED_LATENCY``) loads for the network it measured: canonical ids of
    the space, devices, positive latencies where measured; 'shipped' is one of them."""
    from orchestrator.latency.shipped_tables import SHIPPED, SHIPPED_LATENCY, shipped_latency_table
    from search_spaces.base import SpaceSpec

    assert space_name in SHIPPED_LATENCY_OPTIONS, f"add the options of {space_name}'s measured network"
    assert SHIPPED in SHIPPED_LATENCY.get(space_name).names
    space = SpaceSpec(name=space_name, options=SHIPPED_LATENCY_OPTIONS[space_name]).build()
    table = shipped_latency_table(space, name)
    assert table is not None and table.devices and len(table.archs) == len(set(table.archs)) > 0
    some = table.archs[:: max(1, len(table.archs) // 50)]
    assert [space.arch_id(space.parse(a)) for a in some] == some
    v = table.values[np.isfinite(table.values)]
    assert v.size and (v > 0).all()


def test_every_accuracy_source_names_where_its_front_accuracies_come_from():
    """``accuracy_from`` (the proxy front's column): a word per source, no two sources alike."""
    from orchestrator.pipeline.accuracy import SOURCES

    words = [SOURCES.get(n).accuracy_from for n in registered_accuracy_sources()]
    assert all(w and w == w.strip() and " " not in w for w in words), words
    assert len(set(words)) == len(words), words


@pytest.mark.parametrize("name", registered_accuracy_sources())
def test_a_source_chosen_by_default_reads_the_configs_images(name, tmp_path, monkeypatch):
    """A source chosen by default (here by a space rule naming it) and declaring an ``images_section`` gets the
    config's images as that section's ``data``, whichever section the config gave them in; a source without one
    gets the accuracy section as written, only its ``source`` set. The resolved config is a valid config."""
    from orchestrator.config import PipelineConfig, parse_config
    from orchestrator.pipeline.accuracy import SOURCES
    from orchestrator.pipeline.default_source import DEFAULTS, REAL_IMAGES, DefaultRule, resolve_config

    section = SOURCES.get(name).images_section
    if section is not None:
        assert section in AccuracySection.model_fields, f"{name}: images_section {section!r} is no accuracy field"
        assert "data" in type(getattr(AccuracySection(), section)).model_fields, f"{name}: {section} has no data"
    monkeypatch.setitem(DEFAULTS._items, "nb201", (DefaultRule(name, REAL_IMAGES, "conformance"),))
    images = {"name": "npz", "root": str(tmp_path / "x.npz")}
    (tmp_path / "x.npz").touch()  # validate checks that a dataset file is there
    givens = [{"supernet": {"data": images}}]
    if section is not None:
        givens.append({section: {"data": images}})
    for given in givens:
        cfg = parse_config({"name": "c", "output_dir": str(tmp_path), "space": {"name": "nb201"},
                            "accuracy": given, "latency": {"table": "nb201-hwnasbench", "proxy": "fpga"},
                            "sweep": {"targets": ["edgegpu"]}, "tracking": {"enabled": False}})
        resolved, choice = resolve_config(cfg)
        assert (choice.source, choice.by_default) == (name, True)
        acc = resolved.accuracy
        assert acc.source == name
        if section is not None:
            assert getattr(acc, section).data == DataConfig(**images), (name, given)
        else:
            assert acc.model_copy(update={"source": cfg.accuracy.source}) == cfg.accuracy
        PipelineConfig.model_validate(resolved.model_dump())


@dataclass
class AccuracyCase:
    space: Any
    make: Callable[[], Any]  # the source, built
    ids: list[str] = field(default_factory=list)


def _nb201_ids(space, n=6):
    rng = np.random.default_rng(4)
    return list(dict.fromkeys(space.arch_id(space.sample(rng)) for _ in range(n)))


def table_case(space, small_space):
    from orchestrator.search.accuracy import TableAccuracy

    table = shipped_accuracy("test_acc_cifar10_12ep", "nb201-hwnasbench")
    ids = list(table)[:4] + [a for a in _nb201_ids(space, 8) if a not in table][:2]  # rows, and cells it lacks
    return AccuracyCase(space, lambda: TableAccuracy(space, table, predictor="additive"), ids)


def predictor_case(space, small_space):
    from orchestrator.search.accuracy import PredictorAccuracy, TableAccuracy

    inner = TableAccuracy(space, shipped_accuracy("test_acc_cifar10_12ep", "nb201-full"))  # every cell
    return AccuracyCase(space, lambda: PredictorAccuracy(space, inner, 16, np.random.default_rng(0), "additive"),
                        _nb201_ids(space))


def zero_cost_case(space, small_space):
    from orchestrator.search.accuracy import ZeroCostAccuracy
    from orchestrator.search.zero_cost import make_scorer
    from orchestrator.supernet.data import DataConfig

    def make():
        scorer = make_scorer(small_space, "params", DataConfig(name="digits", max_train=64), batch_size=8,
                             reference=4, seed=0)  # the cheapest proxy: the source's contract, not the proxy's
        return ZeroCostAccuracy(small_space, scorer)

    return AccuracyCase(small_space, make, _nb201_ids(small_space, 4))


def supernet_case(space, small_space):
    """An evaluator pool (one Ray actor) over a freshly initialised NB201 supernet: real forward passes."""
    import ray
    import torch

    from orchestrator.search.accuracy import SupernetAccuracy
    from orchestrator.supernet.data import DataConfig, load_dataset
    from orchestrator.supernet.evaluate import EvalConfig
    from orchestrator.supernet.pool import EvaluatorPool

    torch.manual_seed(0)
    weights = ray.put(dict(small_space.build_supernet().state_dict()))
    data = ray.put(load_dataset(DataConfig(name="digits", max_train=64)))
    cfg = EvalConfig(calib_batches=1, calib_batch_size=16, batch_size=32, max_val=32)
    return AccuracyCase(small_space, lambda: SupernetAccuracy(
        small_space, lambda: EvaluatorPool(small_space.spec(), weights, data, cfg, n_actors=1)),
        _nb201_ids(small_space, 3))


# one factory per source a config may name; a new source without one fails test_every_accuracy_source_has_a_case
ACCURACY_CASES: dict[str, Any] = {
    "table": table_case,
    "predictor": predictor_case,
    "zero_cost": zero_cost_case,
    "supernet": pytest.param(supernet_case, marks=[pytest.mark.slow, pytest.mark.ray]),
}


def test_every_accuracy_source_has_a_case():
    names = registered_accuracy_sources()
    assert {"table", "supernet"} <= set(names)
    missing = sorted(set(names) - set(ACCURACY_CASES))
    assert not missing, f"accuracy source(s) {missing} have no case: add a factory to ACCURACY_CASES"
    assert not set(ACCURACY_CASES) - set(names), "ACCURACY_CASES names a source a config cannot choose"


def _source_params():
    out = []
    for name in registered_accuracy_sources():
        c = ACCURACY_CASES.get(name)
        marks = c.marks if c is not None and not callable(c) else ()
        out.append(pytest.param(name, marks=marks, id=name))
    return out


@pytest.fixture
def maybe_ray(request):
    """The Ray cluster for the sources that need one (marked ray), nothing for the rest."""
    if request.node.get_closest_marker("ray") is not None:
        return request.getfixturevalue("ray_cluster")
    return None


@pytest.mark.parametrize("name", _source_params())
def test_accuracy_source_returns_one_finite_value_per_architecture(name, space, small_space, maybe_ray):
    """``evaluate`` yields each asked architecture once with a finite value; asked again, the same values; its
    name is the one a config uses; its oracle answers every architecture with a finite value."""
    if name not in ACCURACY_CASES:
        pytest.fail(f"accuracy source {name!r} can be configured but has no case in ACCURACY_CASES")
    c = ACCURACY_CASES[name]
    case = (c if callable(c) else c.values[0])(space, small_space)
    source = case.make()
    try:
        got = list(source.evaluate(case.ids))
        assert sorted(a for a, _ in got) == sorted(case.ids)
        values = dict(got)
        assert all(np.isfinite(v) for v in values.values()), values
        assert dict(source.evaluate(case.ids[::-1])) == pytest.approx(values)
        assert list(source.evaluate([])) == []
        assert source.name == name
        oracle = source.oracle(values)
        ov = oracle.values(case.ids + _nb201_ids(case.space, 8))
        assert np.all(np.isfinite(ov))
        np.testing.assert_allclose(oracle.values(case.ids), [values[a] for a in case.ids], rtol=1e-6)
    finally:
        if hasattr(source, "release"):
            source.release()


# -- zero-cost proxies, MILP space models, datasets ----------------------------------------------------------

def _milp_spaces():
    from search_spaces.base import SPACES

    return SPACES.names()


def test_every_space_has_a_milp_model():
    from orchestrator.search.milp import MODELS

    assert set(MODELS.names()) == set(_milp_spaces()), "each registered space needs its MILP model (search.milp)"


@pytest.mark.parametrize("name", _milp_spaces())
def test_milp_model_decodes_what_it_encodes(name):
    """The space's MILP model (``encode x = E v``, decoder ``v -> id``) agrees with the space: each front point
    of random additive models decodes to a valid id whose modelled accuracy and latency are the models applied
    to the space's own encoding of it."""
    from orchestrator.search.milp import milp_front, space_model
    from search_spaces.base import SpaceSpec

    space = SpaceSpec(name=name).build()
    model = space_model(space)
    assert model.E.shape[0] == space.encoding_size
    rng = np.random.default_rng(0)
    acc, lat = rng.normal(size=space.encoding_size), rng.uniform(0.1, 1.0, space.encoding_size)
    front = milp_front(model, acc, 1.0, lat, 2.0, max_points=3, grid=3)
    assert front.points
    for pt in front.points:
        x = encode_ids(space, [pt.arch_id])[0]
        assert space.arch_id(space.parse(pt.arch_id)) == pt.arch_id
        assert pt.accuracy == pytest.approx(acc @ x + 1.0, abs=1e-6)
        assert pt.latency_ms == pytest.approx(lat @ x + 2.0, abs=1e-6)


@pytest.fixture(scope="module")
def digits_batch():
    """Eight real training images (digits) at 32 x 32, the tiny NB201's input."""
    from orchestrator.search.zero_cost import proxy_batch

    return proxy_batch(load_dataset(DataConfig(name="digits", max_train=64)), 8, 0)


@pytest.mark.parametrize("proxy", PROXIES.names())
def test_zero_cost_proxy(proxy, small_space, digits_batch):
    """Each proxy scores a network with a number (finite for the largest network, whose every edge is a
    convolution), the same when scored again with the same seed."""
    from orchestrator.search.zero_cost import score_cells

    x, y = digits_batch
    ids = [small_space.arch_id(small_space.largest()), _nb201_ids(small_space, 1)[0]]
    a = score_cells(small_space, ids, x, y, [proxy], 0)[proxy]
    assert a.shape == (2,) and not np.isnan(a).any() and np.isfinite(a[0]), a
    np.testing.assert_allclose(score_cells(small_space, ids, x, y, [proxy], 0)[proxy], a, rtol=1e-5)


# one factory per registered dataset: a tiny valid instance of its format (written to tmp_path where it reads
# files); a new dataset without one fails test_every_dataset_has_a_case
def _npz(tmp):
    from test_data import write_npz

    return DataConfig(name="npz", root=str(write_npz(tmp / "d.npz")), resolution=8)


def _folder(tmp):
    from test_data import write_folder

    return DataConfig(name="imagefolder", root=str(write_folder(tmp / "imgs", per_class=8)), resolution=8)


def _cifar10(tmp):
    from test_data import write_fake_cifar

    write_fake_cifar(tmp)
    return DataConfig(name="cifar10", root=str(tmp), resolution=8)


def _cifar100(tmp):
    import pickle

    d = tmp / "cifar-100-python"
    d.mkdir()
    rng = np.random.default_rng(0)
    for name, n in (("train", 200), ("test", 100)):
        with open(d / name, "wb") as f:
            pickle.dump({b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                         b"fine_labels": (np.arange(n) % 100).tolist()}, f)
    return DataConfig(name="cifar100", root=str(tmp), resolution=8)


DATASET_CASES: dict[str, Callable[[Any], DataConfig]] = {
    "digits": lambda tmp: DataConfig(name="digits", resolution=8, max_train=64),
    "synthetic": lambda tmp: DataConfig(name="synthetic", resolution=8, synthetic_size=64),
    "npz": _npz,
    "imagefolder": _folder,
    "cifar10": _cifar10,
    "cifar100": _cifar100,
}


def test_every_dataset_has_a_case():
    missing = sorted(set(DATASETS.names()) - set(DATASET_CASES))
    assert not missing, f"dataset(s) {missing} have no case: add a tiny instance to DATASET_CASES"


@pytest.mark.parametrize("name", DATASETS.names())
def test_dataset_loads_labelled_images_at_the_resolution(name, tmp_path):
    """Training and validation images of shape (n, channels, r, r), finite, labels in [0, num_classes); the
    same config loads the same images."""
    if name not in DATASET_CASES:
        pytest.fail(f"dataset {name!r} is registered but has no case in DATASET_CASES")
    cfg = DATASET_CASES[name](tmp_path)
    data = load_dataset(cfg)
    again = load_dataset(cfg)
    for x, y in ((data.x_train, data.y_train), (data.x_val, data.y_val)):
        first = torch.as_tensor(x[0:4])
        assert len(x) == len(y) > 0 and first.shape[-2:] == (8, 8) and torch.isfinite(first).all()
        assert int(y.min()) >= 0 and int(y.max()) < data.num_classes
    assert data.num_classes >= 2
    torch.testing.assert_close(torch.as_tensor(again.x_train[0:4]), torch.as_tensor(data.x_train[0:4]))
    assert torch.equal(again.y_train, data.y_train)
