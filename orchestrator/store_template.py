"""A new SQLite MLflow store copied from a template instead of migrated from scratch.

MLflow creates a SQLite store by running every schema migration of its history one after the other: about 10 s
on two cores (2026-12-02, MLflow 3.17, 65 tables), most of the start of a short ``hwnas run`` in a new folder. hwnas
keeps one empty, fully migrated store per MLflow version (and version of this module) in its disk cache
(``orchestrator.disk_cache``: ``$HWNAS_CACHE_DIR``, ``off`` turns it off), made the first time it is needed, and
copies it where a new store is to be created. The template is a store MLflow created, with its Default experiment
(id 0) removed: MLflow creates that experiment when it opens a store that lacks it, with the artifact location
and time it would have given it in a new store (``SqlAlchemyStore.__init__``), so the copy is the store MLflow
would have made. Anything that goes wrong (no cache, an unwritable cache, a file system without hard links)
leaves the store to MLflow, as before; an existing store is never touched.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sqlite3
import tempfile
from pathlib import Path

from orchestrator import disk_cache

log = logging.getLogger(__name__)

KIND = "mlflow_store"


def template() -> Path | None:
    """The empty migrated store of the installed MLflow in the disk cache, made now if there is none; None when
    the cache is off or the template cannot be made (logged at debug)."""
    import mlflow

    root = disk_cache.cache_dir()
    if root is None:
        return None
    key = f"mlflow-{mlflow.__version__}-{disk_cache.code_version('store_template.py')[:12]}"
    path = root / KIND / f"{key}.db"
    if path.is_file():
        return path
    tmp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{key}.", suffix=".db", dir=path.parent)
        os.close(fd)
        os.unlink(tmp)  # MLflow creates the file (an empty one would not be "a store without tables" to it)
        _create_empty_store(Path(tmp))
        os.replace(tmp, path)  # atomic: two processes making one at once both leave a whole template
        tmp = None
        log.debug("made the MLflow store template %s", path)
        return path
    except Exception as e:  # noqa: BLE001 - MLflow, SQLAlchemy and the file system raise many types
        log.debug("no MLflow store template in %s (%s: %s); MLflow creates the store", path.parent,
                  type(e).__name__, e)
        return None
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


def _create_empty_store(db: Path) -> None:
    """A store at ``db`` created by MLflow (every migration run), without its Default experiment."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    store = SqlAlchemyStore(f"sqlite:///{db}", str(db.parent / "mlruns"))
    store.engine.dispose()
    con = sqlite3.connect(db)
    try:
        with con:
            con.execute("DELETE FROM experiments WHERE experiment_id = 0")
    finally:
        con.close()


def seed_store(db: Path) -> bool:
    """Put a copy of the template at ``db`` if there is no file there (never replacing one, even one that appears
    meanwhile); returns whether it did. The caller holds the store's first-use lock
    (``tracking._first_use_lock``)."""
    if db.exists():
        return False
    source = template()
    if source is None:
        return False
    tmp = db.with_name(f".{db.name}.{os.getpid()}.seed")
    try:
        shutil.copyfile(source, tmp)
        os.link(tmp, db)  # no-clobber: FileExistsError where another tool created the store meanwhile
        return True
    except OSError as e:
        log.debug("MLflow store %s not seeded from %s (%s); MLflow creates it", db, source, e)
        return False
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()
