"""The search driver on the shipped NB201 tables: budget, no repeated work, constraint, domain, seeding."""

from __future__ import annotations

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState

from orchestrator.errors import ConfigError
from orchestrator.latency.table import shipped_accuracy
from orchestrator.search.accuracy import TableAccuracy
from orchestrator.search.driver import (
    ARCH_ATTR,
    BUDGET_KEY,
    SAMPLERS,
    SearchDriver,
    TableDomain,
    candidates,
    hypervolume_history,
    make_sampler,
)
from orchestrator.search.storage import EvalLog, make_storage, open_study


class CountingAccuracy:
    """The real table source, counting what it is asked to evaluate."""

    name = "counting"

    def __init__(self, inner: TableAccuracy) -> None:
        self.inner = inner
        self.asked: list[str] = []

    def evaluate(self, arch_ids):
        self.asked.extend(arch_ids)
        yield from self.inner.evaluate(arch_ids)


@pytest.fixture(scope="module")
def acc_table():
    return shipped_accuracy("test_acc_cifar10_12ep", "nb201-hwnasbench")


def _latency(shipped, device="fpga"):
    return lambda ids: shipped.lookup(device, ids)


def _driver(space, shipped, acc_table, tmp_path, *, algorithm="nsga2", n=60, seed=0, budget=None, name="s",
            resume=False, eval_log=None):
    storage = make_storage(None, tmp_path)
    study = open_study(storage, name, make_sampler(algorithm, seed, 12), resume=resume)
    accuracy = CountingAccuracy(TableAccuracy(space, acc_table))
    driver = SearchDriver(study, space, accuracy, _latency(shipped), n_trials=n, batch_size=12,
                          latency_budget_ms=budget, domain=TableDomain(space, shipped.archs),
                          eval_log=eval_log or EvalLog(tmp_path / "evaluations.jsonl"))
    return driver, accuracy


@pytest.mark.parametrize("algorithm", ["nsga2", "tpe", "random"])
def test_budget_met_and_no_architecture_evaluated_twice(space, shipped, acc_table, tmp_path, algorithm):
    driver, accuracy = _driver(space, shipped, acc_table, tmp_path, algorithm=algorithm, n=50)
    found = driver.run()
    assert driver.n_complete() == 50 == len(found)
    assert len(accuracy.asked) == len(set(accuracy.asked))  # every evaluation is a new architecture
    assert driver.stats.told == 50 and driver.stats.evaluated == len(accuracy.asked)
    assert driver.stats.evaluated + driver.stats.from_log <= 50  # repeats within a batch share one evaluation
    for c in found:  # values are the table's, at the snapped architecture
        assert c.accuracy == pytest.approx(acc_table[c.arch_id])
        assert c.latency_ms == pytest.approx(shipped.lookup("fpga", [c.arch_id])[0])
        assert c.arch_id in set(shipped.archs)


def test_log_answers_repeats_across_drivers(space, shipped, acc_table, tmp_path):
    driver, _ = _driver(space, shipped, acc_table, tmp_path, n=36)
    driver.run()
    # a second driver on the same log (as after a resume) evaluates only architectures the log lacks
    log2 = EvalLog(tmp_path / "evaluations.jsonl")
    assert log2.n_lines == driver.stats.evaluated
    driver2, acc2 = _driver(space, shipped, acc_table, tmp_path, n=72, name="s", resume=True, eval_log=log2)
    driver2.run()
    assert not set(acc2.asked) & set(driver.log.values)
    assert driver2.n_complete() == 72


def test_the_closing_log_line_tells_a_fresh_search_from_a_resumed_one(space, shipped, acc_table, tmp_path,
                                                                      caplog):
    """A fresh search's repeats are "asked again", not "from the log" as if resumed; architectures the log
    held before the search began are counted as such; the line names the search."""
    import logging

    caplog.set_level(logging.INFO, logger="orchestrator.search.driver")
    driver, _ = _driver(space, shipped, acc_table, tmp_path, n=48)
    driver.label = "per-device search pixel3"
    driver.run()
    (line,) = [r.getMessage() for r in caplog.records if "completed trials" in r.getMessage()]
    assert line.startswith("per-device search pixel3: 48 completed trials")
    assert "evaluation log" not in line and "from the log" not in line and driver.stats.logged_before == 0
    repeats = driver.stats.asked - driver.stats.evaluated  # this search's repeats, in a batch or across batches
    assert repeats > 0 and f"evaluated {driver.stats.evaluated} new architectures, {repeats} asked again" in line
    caplog.clear()
    log2 = EvalLog(tmp_path / "evaluations.jsonl")  # as after a resume, or in a later stage of the run
    driver2, acc2 = _driver(space, shipped, acc_table, tmp_path, n=96, resume=True, eval_log=log2)
    driver2.run()
    (line,) = [r.getMessage() for r in caplog.records if "completed trials" in r.getMessage()]
    assert line.startswith("search: 96 completed trials") and driver2.stats.logged_before > 0
    assert f"{driver2.stats.logged_before} already in the evaluation log" in line


def test_latency_budget_is_a_constraint(space, shipped, acc_table, tmp_path):
    lat = shipped.column("fpga")
    budget = float(np.quantile(lat, 0.3))
    driver, _ = _driver(space, shipped, acc_table, tmp_path, n=48, budget=budget)
    found = driver.run()
    for c in found:
        assert c.feasible == (c.latency_ms <= budget)
    trials = driver.study.get_trials(states=(TrialState.COMPLETE,))
    for t in trials:
        assert t.constraints[BUDGET_KEY] == pytest.approx(t.values[1] - budget)
    assert any(c.feasible for c in found)


def test_a_continued_study_does_not_replay_and_a_seed_is_a_seed(space):
    dists = space.distributions()
    sa = optuna.create_study(directions=["maximize", "minimize"], sampler=make_sampler("random", 0, 10))
    first = [sa.ask(dists).params for _ in range(5)]
    assert [sa.ask(dists).params for _ in range(5)] != first  # later positions draw anew
    again = optuna.create_study(directions=["maximize", "minimize"], sampler=make_sampler("random", 0, 10))
    assert [again.ask(dists).params for _ in range(5)] == first
    other = optuna.create_study(directions=["maximize", "minimize"], sampler=make_sampler("random", 1, 10))
    assert [other.ask(dists).params for _ in range(5)] != first


class Killed(BaseException):
    """The driver dying mid-batch (a kill): trials asked and not told stay RUNNING in the journal."""


class DiesAfter(CountingAccuracy):
    def __init__(self, inner: TableAccuracy, n: int) -> None:
        super().__init__(inner)
        self.left = n

    def evaluate(self, arch_ids):
        for a, v in self.inner.evaluate(arch_ids):
            if self.left == 0:
                raise Killed
            self.left -= 1
            yield a, v


@pytest.mark.parametrize(("algorithm", "kill_after"), [
    ("random", 3), ("random", 14), ("random", 27), ("nsga2", 3), ("nsga2", 14), ("nsga2", 27), ("nsga2", 38),
    ("nsga2", 45),
])
def test_resume_after_a_kill_reproduces_the_uninterrupted_search(space, shipped, acc_table, tmp_path, algorithm,
                                                                  kill_after):
    """Same seed: the architectures the resumed search completes are those of the uninterrupted one, wherever
    the kill fell (mid-batch, in the random first generation or later)."""
    from collections import Counter

    def proposals(study):
        return Counter(t.user_attrs["arch"] for t in study.get_trials(states=(TrialState.COMPLETE,)))

    (tmp_path / "whole").mkdir()
    whole, _ = _driver(space, shipped, acc_table, tmp_path / "whole", algorithm=algorithm, n=60)
    whole.run()

    d = tmp_path / "killed"
    d.mkdir()
    killed, _ = _driver(space, shipped, acc_table, d, algorithm=algorithm, n=60)
    killed.accuracy = DiesAfter(TableAccuracy(space, acc_table), kill_after)
    with pytest.raises(Killed):
        killed.run()
    assert killed.study.get_trials(states=(TrialState.RUNNING,))  # a batch was in flight
    resumed, _ = _driver(space, shipped, acc_table, d, algorithm=algorithm, n=60, resume=True,
                         eval_log=EvalLog(d / "evaluations.jsonl"))
    resumed.run()
    assert resumed.n_complete() == 60
    assert proposals(resumed.study) == proposals(whole.study)


@pytest.mark.parametrize("algorithm", ["nsga2", "random"])
def test_a_shorter_search_is_a_prefix_of_a_longer_one(space, shipped, acc_table, algorithm):
    """What a search of n trials proposes is the first n trials of a longer one with the same seed, and a
    budget grown one batch at a time (bench/zero_cost_search_fronts.py judges each budget on one long search's
    first cells) is the same search as the whole budget at once."""

    def trials(n, steps=1):
        study = optuna.create_study(directions=["maximize", "minimize"])
        study.sampler = make_sampler(algorithm, 3, 12)
        driver = SearchDriver(study, space, TableAccuracy(space, acc_table), _latency(shipped), n_trials=n // steps,
                              batch_size=12, domain=TableDomain(space, shipped.archs))
        for _ in range(steps):
            driver.run()
            driver.n_trials += n // steps
        return [c.arch_id for c in candidates(study)]

    whole = trials(48)
    assert len(whole) == 48 and len(set(whole)) > 12  # past NSGA-II's random first generation
    assert trials(24) == whole[:24]
    assert trials(48, steps=4) == whole


def test_unknown_sampler_names_the_choices():
    with pytest.raises(Exception, match="nsga2"):
        SAMPLERS.get("nsga3")


def test_table_domain_snaps_to_nearest(space, shipped):
    dom = TableDomain(space, shipped.archs[:50])
    first = shipped.archs[0]
    assert dom.snap(first) == first
    rng = np.random.default_rng(3)
    for _ in range(10):
        a = space.arch_id(space.sample(rng))
        s = dom.snap(a)
        assert s in dom.ids
        from search_spaces.base import encode_ids

        d = np.abs(encode_ids(space, dom.ids) - encode_ids(space, [a])[0]).sum(axis=1)
        assert d[dom.ids.index(s)] == d.min()
    with pytest.raises(ConfigError, match="no architectures"):
        TableDomain(space, [])


def test_bad_budget_values_rejected(space, shipped, acc_table):
    study = optuna.create_study(directions=["maximize", "minimize"])
    with pytest.raises(ConfigError, match="n_trials"):
        SearchDriver(study, space, TableAccuracy(space, acc_table), _latency(shipped), n_trials=0, batch_size=4)


def test_hypervolume_history_is_monotone(space, shipped, acc_table, tmp_path):
    driver, _ = _driver(space, shipped, acc_table, tmp_path, n=40)
    found = driver.run()
    hist = hypervolume_history(found, 0.0, float(shipped.column("fpga").max()) * 1.01, every=5)
    hv = [h for _, h in hist]
    assert [n for n, _ in hist] == list(range(5, 41, 5))
    assert all(b >= a - 1e-12 for a, b in zip(hv, hv[1:], strict=False)) and hv[-1] > 0
    assert all(t.user_attrs[ARCH_ATTR] for t in driver.study.get_trials(states=(TrialState.COMPLETE,)))
    assert candidates(driver.study) == found


@pytest.mark.parametrize("name,options", [("nb201", {}), ("mobilenetv3", {"resolution": 32}), ("fbnet", {}),
                                          ("mobilenetv3", {"resolutions": "ofa"})])
def test_to_params_inverts_from_params(name, options):
    from search_spaces.base import get_space

    sp = get_space(name, **options)
    rng = np.random.default_rng(0)
    dists = sp.distributions()
    for _ in range(20):
        arch = sp.sample(rng)
        params = sp.to_params(arch)
        assert set(params) == set(dists)
        assert all(params[k] in dists[k].choices for k in params)
        assert sp.arch_id(sp.from_params(params)) == sp.arch_id(arch)


@pytest.mark.parametrize("algorithm", ["exhaustive", "nsga2"])
def test_every_algorithm_names_its_search_in_its_log_line(space, shipped, acc_table, caplog, algorithm):
    """A per-device search's lines say which device they are about (many run in one sweep)."""
    import logging

    from orchestrator.search.algorithms import SearchProblem, SearchSettings, run_search

    caplog.set_level(logging.INFO, logger="orchestrator.search")
    problem = SearchProblem(space, TableAccuracy(space, acc_table), _latency(shipped, "pixel3"),
                            domain=TableDomain(space, shipped.archs[:200]), label="per-device search pixel3")
    run_search(problem, algorithm, SearchSettings(n_trials=24, population=12))
    assert any(r.getMessage().startswith("per-device search pixel3: ") for r in caplog.records)
