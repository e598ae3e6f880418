"""The disk cache of the multi transfer's meta-learned selection: a hit is exactly the computed selection, any
change to the inputs or to the code is a new entry, a damaged or unwritable cache only costs the computation."""

from __future__ import annotations

import json

import numpy as np
import pytest

from orchestrator.latency import selection_cache as sc
from orchestrator.latency import transfer
from orchestrator.latency.transfer import SourceSet, select_multi


def _sources(seed: int = 0, n: int = 300) -> SourceSet:
    rng = np.random.default_rng(seed)
    X = rng.integers(0, 2, size=(n, 12)).astype(np.float32)
    w = rng.uniform(0.5, 2.0, size=(12, 4))
    Y = 1.0 + X @ w + rng.normal(0, 0.05, size=(n, 4))
    return SourceSet([f"d{i}" for i in range(4)], X, Y, seed=seed)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv(sc.ENV, str(tmp_path / "c"))
    return tmp_path / "c" / sc.SUBDIR


def _spy(monkeypatch) -> list[int]:
    calls: list[int] = []
    real = transfer._select_multi

    def counted(sources, k, draws):
        calls.append(k)
        return real(sources, k, draws)

    monkeypatch.setattr(transfer, "_select_multi", counted)
    return calls


def test_a_second_source_set_reads_the_first_ones_selection(cache, monkeypatch):
    calls = _spy(monkeypatch)
    first = select_multi(_sources(), 10)
    assert calls == [10] and len(list(cache.glob("*.json"))) == 1
    again = select_multi(_sources(), 10)  # a new SourceSet, same data: read from disk, not computed
    assert again == first and calls == [10]
    assert isinstance(again[1], int) and isinstance(again[2], bool)
    select_multi(_sources(), 30)  # another bucket of k
    select_multi(_sources(seed=1), 10)  # other data and seed
    assert calls == [10, 30, 10] and len(list(cache.glob("*.json"))) == 3


def test_the_cached_selection_is_the_computed_one(cache, monkeypatch):
    """Cache on, then off (computed fresh), for a few buckets: equal each time."""
    on = [select_multi(_sources(2), k) for k in (5, 10, 30)]
    monkeypatch.setenv(sc.ENV, "off")
    off = [select_multi(_sources(2), k) for k in (5, 10, 30)]
    assert on == off
    monkeypatch.setenv(sc.ENV, str(cache.parent))
    assert [select_multi(_sources(2), k) for k in (5, 10, 30)] == on


def test_code_and_inputs_are_in_the_key(monkeypatch):
    src = _sources()
    args = (src.names, src.X, src.Y, src.groups, src.seed, 10, 16)
    key = sc.selection_key(*args)
    assert sc.selection_key(*args) == key
    Y = src.Y.copy()
    Y[0, 0] += 1e-9
    assert sc.selection_key(src.names, src.X, Y, src.groups, src.seed, 10, 16) != key
    assert sc.selection_key(["e0", *src.names[1:]], src.X, src.Y, src.groups, src.seed, 10, 16) != key
    assert sc.selection_key(*args[:4], 1, 10, 16) != key
    monkeypatch.setattr(sc, "code_version", lambda: "another version of the code")
    assert sc.selection_key(*args) != key


def test_a_damaged_entry_is_computed_again_and_rewritten(cache, monkeypatch):
    first = select_multi(_sources(), 10)
    (entry,) = cache.glob("*.json")
    for junk in ("{not json", json.dumps(["loo"]), json.dumps([[1.0, 2.0], 3, True]), json.dumps([7, 3, True])):
        entry.write_text(junk)
        calls = _spy(monkeypatch)
        assert select_multi(_sources(), 10) == first and calls == [10]
        assert json.loads(entry.read_text())[1:] == [first[1], first[2]]
        monkeypatch.undo()
        monkeypatch.setenv(sc.ENV, str(cache.parent))


def test_an_unwritable_cache_only_costs_the_computation(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache directory would go")
    monkeypatch.setenv(sc.ENV, str(blocker / "cache"))
    calls = _spy(monkeypatch)
    assert select_multi(_sources(), 10) == select_multi(_sources(), 10)
    assert calls == [10, 10]  # nothing stored: computed each time
    assert not list(tmp_path.rglob("*.json"))


def test_where_the_cache_lives(tmp_path, monkeypatch):
    monkeypatch.setenv(sc.ENV, "OFF")
    assert sc.cache_dir() is None
    monkeypatch.setenv(sc.ENV, str(tmp_path / "x"))
    assert sc.cache_dir() == tmp_path / "x"
    monkeypatch.delenv(sc.ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert sc.cache_dir() == tmp_path / "xdg" / "hwnas"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert sc.cache_dir() == tmp_path / "home" / ".cache" / "hwnas"


def test_a_source_set_prepared_from_the_cache_alone(cache, monkeypatch):
    """What the sweep's driver does before sending source sets to Ray tasks: take every bucket from the disk
    cache, or nothing (and compute nothing) where one is missing."""
    calls = _spy(monkeypatch)
    fresh = _sources()
    assert not fresh.prepared_from_cache([3, 10]) and calls == [] and not fresh._hparams
    done = _sources().prepare([3, 10])
    assert sorted(calls) == sorted({transfer.k_bucket(3), transfer.k_bucket(10)})
    assert fresh.prepared_from_cache([3, 10]) and fresh._hparams == done._hparams
    assert len(calls) == 2
    half = _sources()
    assert not half.prepared_from_cache([3, 10, 200]) and not half._hparams  # all or nothing
    assert _sources(n=300).prepared_from_cache([]) and SourceSet(["a"], *(_sources().X, _sources().Y[:, :1])
                                                                 ).prepared_from_cache([10])  # nothing to meta-learn


def test_the_t_copula_grid_from_the_cache_is_the_computed_one(tmp_path, monkeypatch):
    """decision._t_pearson_grid: computed once into the cache, read back bit for bit (JSON keeps every digit), a
    damaged entry computed again."""
    from orchestrator.sweep import decision

    monkeypatch.setenv(sc.ENV, str(tmp_path))
    computed = decision._t_pearson_grid_computed()
    decision._t_pearson_grid.cache_clear()
    first = decision._t_pearson_grid()
    (entry,) = (tmp_path / "t-copula-grid").glob("*.json")
    decision._t_pearson_grid.cache_clear()
    monkeypatch.setattr(decision, "_t_pearson_grid_computed", lambda: pytest.fail("computed despite the cache"))
    again = decision._t_pearson_grid()
    assert np.array_equal(first, computed) and np.array_equal(again, computed)
    entry.write_text("[1.0, 2.0]")
    decision._t_pearson_grid.cache_clear()
    monkeypatch.setattr(decision, "_t_pearson_grid_computed", lambda: computed)
    assert np.array_equal(decision._t_pearson_grid(), computed)
    assert len(json.loads(entry.read_text())) == len(decision.RHO_GRID)
    decision._t_pearson_grid.cache_clear()
