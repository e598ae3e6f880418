"""A new SQLite MLflow store is a copy of an empty migrated store kept in hwnas's disk cache
(``orchestrator/store_template.py``): the same store MLflow would have made, never written over an existing one,
and MLflow's own creation wherever the template cannot be had."""

from __future__ import annotations

import sqlite3

import pytest

from orchestrator import store_template
from orchestrator.disk_cache import ENV
from orchestrator.tracking import Tracker


def contents(db):
    con = sqlite3.connect(db)
    try:
        # each statement as the multiset of its comma-separated parts: MLflow's own migrations write a table's
        # constraints in an order that changes from process to process (two CHECKs of `runs` swap places)
        schema = sorted((kind, name, sorted(p.strip() for p in (sql or "").split(",")))
                        for kind, name, sql in con.execute("SELECT type, name, sql FROM sqlite_master"))
        rows = {t: con.execute(f'SELECT * FROM "{t}"').fetchall()
                for (t,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    finally:
        con.close()
    for t in ("experiments", "workspaces"):  # creation times differ; everything else must not
        rows[t] = [tuple(v for v in r if not (isinstance(v, int) and v > 10**12)) for r in rows[t]]
    return schema, rows


def test_a_seeded_store_is_the_store_mlflow_makes(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # MLflow puts the Default experiment's artifacts under the working directory
    monkeypatch.setenv(ENV, "off")
    Tracker(f"sqlite:///{tmp_path}/plain/mlflow.db", "e")  # MLflow's own creation: every migration
    monkeypatch.setenv(ENV, str(tmp_path / "cache"))
    first = Tracker(f"sqlite:///{tmp_path}/first/mlflow.db", "e")  # makes the template, then is seeded from it
    templates = list((tmp_path / "cache" / store_template.KIND).glob("*.db"))
    assert len(templates) == 1 and contents(templates[0])[1]["experiments"] == []
    second = Tracker(f"sqlite:///{tmp_path}/second/mlflow.db", "e")
    plain = contents(tmp_path / "plain" / "mlflow.db")
    assert contents(tmp_path / "first" / "mlflow.db")[0] == plain[0]
    seeded = contents(tmp_path / "second" / "mlflow.db")
    assert seeded[0] == plain[0]  # the schema, alembic's version included
    by_dir = {k: v for k, v in plain[1].items() if k != "experiments"}
    assert {k: v for k, v in seeded[1].items() if k != "experiments"} == by_dir
    # the Default experiment (made by MLflow on opening) and the run's experiment: as in the plain store, but
    # the run's artifacts beside its own store
    exps = sorted(seeded[1]["experiments"])
    assert [e[:2] for e in exps] == [(0, "Default"), (1, "e")]
    assert exps[0] == sorted(plain[1]["experiments"])[0]
    assert str(tmp_path / "second" / "mlartifacts") in exps[1][2]
    run = second.client.create_run(second.experiment_id)  # a working store
    second.client.log_metric(run.info.run_id, "m", 1.0)
    assert second.client.get_run(run.info.run_id).data.metrics == {"m": 1.0}
    assert first.experiment_id == second.experiment_id == "1"


def test_an_existing_store_is_never_replaced(tmp_path, monkeypatch):
    monkeypatch.setenv(ENV, str(tmp_path / "cache"))
    db = tmp_path / "mlflow.db"
    db.write_bytes(b"not a store")
    assert store_template.seed_store(db) is False and db.read_bytes() == b"not a store"
    assert not (tmp_path / "cache").exists()  # nothing made for it


@pytest.mark.parametrize("cache", ["off", "unusable"])
def test_without_a_template_mlflow_creates_the_store(tmp_path, monkeypatch, cache):
    if cache == "unusable":  # a file where the cache folder would be (as root, a read-only folder is writable)
        (tmp_path / "file").write_text("x")
        monkeypatch.setenv(ENV, str(tmp_path / "file" / "cache"))
    else:
        monkeypatch.setenv(ENV, "off")
    assert store_template.template() is None
    assert store_template.seed_store(tmp_path / "s" / "mlflow.db") is False
    t = Tracker(f"sqlite:///{tmp_path}/s/mlflow.db", "e")
    assert t.client.get_experiment_by_name("e") is not None
