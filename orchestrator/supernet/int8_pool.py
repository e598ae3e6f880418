"""int8 accuracy on Ray actors: front members evaluated several at once, off the driver.

Each :class:`Int8Actor` holds one :class:`orchestrator.supernet.int8.Int8Evaluator` (the supernet, its
recalibration batches and the int8 calibration images), built on its first call from object-store references
(the weights and the dataset go into the store once; a restarted actor fetches them again). An actor asks Ray
for ``options.threads`` CPUs (at most the cluster's), and runs PyTorch and ONNX Runtime on that many threads, so
its values are the sequential path's (``Int8Evaluator.evaluate_all`` in a process with the same thread count).

Failures: a member whose evaluation fails returns its ``error`` from the actor (the evaluator catches it); an
actor that dies on a member (a crash in a runtime's native code) costs that member alone: it is recorded as
failed (``"actor: ..."``) and a fresh actor takes its place. An error building the evaluator (too few training
images for ``calibration_images``) is the configuration's and is raised.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

import ray
import torch

from orchestrator.errors import HwnasError
from orchestrator.ray_connect import ray_cause
from orchestrator.supernet.data import Dataset
from orchestrator.supernet.evaluate import EvalConfig
from orchestrator.supernet.int8 import Int8Accuracy, Int8Evaluator, failure_reason, log_result
from search_spaces.base import SpaceSpec

log = logging.getLogger(__name__)


@ray.remote(max_restarts=1, max_task_retries=1)
class Int8Actor:
    """One evaluator of front members in int8 and fp32 (see the module doc)."""

    def __init__(self, spec: SpaceSpec, eval_cfg: EvalConfig, options: Any) -> None:
        torch.set_num_threads(options.threads)
        self.spec, self.cfg, self.options = spec, eval_cfg, options
        self.evaluator: Int8Evaluator | None = None

    def evaluate(self, arch_id: str, state: list[ray.ObjectRef]) -> Int8Accuracy:
        if self.evaluator is None:
            weights, data = ray.get(state)
            self.evaluator = Int8Evaluator(self.spec, weights, data, self.cfg, self.options)
        return self.evaluator.evaluate(arch_id)


def evaluate_parallel(spec: SpaceSpec, weights: Mapping[str, torch.Tensor] | ray.ObjectRef,
                      data: Dataset | ray.ObjectRef, eval_cfg: EvalConfig, options: Any,
                      arch_ids: Sequence[str], actors: int | None = None) -> dict[str, Int8Accuracy]:
    """Each distinct id of ``arch_ids`` evaluated once in int8 and fp32 (``Int8Evaluator.evaluate``), on up to
    ``actors`` (default ``options.actors``) Ray actors at once; one progress line per member as it finishes;
    the actors end before this returns (their CPUs go back to the cluster). Returns arch id -> result, in
    the order of ``arch_ids``. Needs a connected Ray.

    Raises the evaluator's own configuration error (``HwnasError``, e.g. a ``DataError`` for more
    ``calibration_images`` than training images); a member's failure is its result's ``error``."""
    ids = list(dict.fromkeys(arch_ids))
    if not ids:
        return {}
    cluster_cpus = float(ray.cluster_resources().get("CPU", 1.0))
    cpus = min(float(options.threads), cluster_cpus)
    n = max(1, min(actors or options.actors, len(ids), int(cluster_cpus // max(cpus, 1e-9))))
    state = [weights if isinstance(weights, ray.ObjectRef) else ray.put(dict(weights)),
             data if isinstance(data, ray.ObjectRef) else ray.put(data)]

    def start() -> Any:
        return Int8Actor.options(num_cpus=cpus).remote(spec, eval_cfg, options)

    pool = [start() for _ in range(n)]
    log.info("int8: %d architectures on %d Ray actors (%g CPUs each)", len(ids), n, cpus)
    t0 = time.perf_counter()
    todo = list(reversed(ids))
    pending: dict[ray.ObjectRef, tuple[str, int]] = {}  # ref -> (arch, actor slot)
    out: dict[str, Int8Accuracy] = {}
    try:
        for slot in range(n):
            a = todo.pop()
            pending[pool[slot].evaluate.remote(a, state)] = (a, slot)
        while pending:
            (ref,), _ = ray.wait(list(pending), num_returns=1)
            a, slot = pending.pop(ref)
            try:
                out[a] = ray.get(ref)
            except ray.exceptions.RayActorError as e:  # the actor died on this member (Ray's retry spent)
                out[a] = Int8Accuracy(a, None, None, 0, 0.0, failure_reason("actor", e))
                log.warning("int8: the actor evaluating %s died (%s); a fresh one takes its place", a,
                            type(e).__name__)
                ray.kill(pool[slot])
                pool[slot] = start()
            except ray.exceptions.RayTaskError as e:
                cause = ray_cause(e)
                if isinstance(cause, HwnasError):
                    raise cause from None
                raise
            log_result(out[a], len(out), len(ids))
            if todo:
                b = todo.pop()
                pending[pool[slot].evaluate.remote(b, state)] = (b, slot)
    finally:
        for actor in pool:
            ray.kill(actor)
    failed = sum(not r.ok for r in out.values())
    log.info("int8: %d architectures in %.1fs on %d actors%s", len(ids), time.perf_counter() - t0, n,
             f", {failed} failed" if failed else "")
    return {a: out[a] for a in ids}
