"""A pool of Ray actors that evaluate subnets with inherited weights.

The supernet's weights and the evaluation data go into the object store once
(``ray.put``); every actor receives the references as constructor arguments,
so nothing large is re-sent per task, and an actor that Ray restarts gets them
again from the store. Results stream back in completion order.

Fault tolerance: actors restart (``max_restarts``) and Ray retries their
interrupted tasks (``max_task_retries``); if a task still fails, the pool
resubmits it to another actor. Each result is keyed by the architecture's
position in the input, so none is lost and none is yielded twice.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import ray
import torch

from orchestrator.errors import ConfigError
from orchestrator.supernet.data import Dataset
from orchestrator.supernet.evaluate import EvalConfig, EvalResult, calibration_batches, evaluate_subnet
from orchestrator.supernet.spec import one_shot_space
from search_spaces.base import SpaceSpec

log = logging.getLogger(__name__)


@ray.remote(max_restarts=3, max_task_retries=3)
class EvaluatorActor:
    def __init__(self, space_spec: SpaceSpec, eval_cfg: dict[str, Any], threads: int | None = 1) -> None:
        if threads:
            torch.set_num_threads(threads)
        self.space = one_shot_space(space_spec)
        self.cfg = EvalConfig(**eval_cfg)
        self.supernet: Any = None
        self.name = f"pid{os.getpid()}"

    def _load(self, state: list[ray.ObjectRef]) -> None:
        """The weights and data arrive with each call as references (fetched once): a constructor that took
        object-store arguments could not be restarted once they were gone (ray-project/ray#53727); a call's
        arguments can always be fetched again, so a restarted actor simply loads them on its next call."""
        weights, data = ray.get(state)
        self.supernet = self.space.build_supernet()
        self.supernet.load_state_dict(weights)
        self.supernet.to(self.cfg.device).eval()
        self.data = data
        self.calib = calibration_batches(data, self.cfg)

    def evaluate(self, index: int, arch: dict[str, Any], state: list[ray.ObjectRef]) -> EvalResult:
        if self.supernet is None:
            self._load(state)
        return evaluate_subnet(self.space, self.supernet, arch, self.data, self.cfg, self.calib, index, self.name)

    def pid(self) -> int:
        return os.getpid()


class EvaluatorPool:
    """``n_actors`` evaluator actors sharing one copy of the weights and data in the object store."""

    def __init__(self, space_spec: SpaceSpec, weights: Mapping[str, torch.Tensor] | ray.ObjectRef,
                 data: Dataset | ray.ObjectRef, eval_cfg: EvalConfig | None = None, n_actors: int = 2,
                 num_cpus: float = 1, num_gpus: float = 0, threads: int | None = 1,
                 in_flight_per_actor: int = 2) -> None:
        if n_actors < 1:
            raise ConfigError(f"an evaluator pool needs n_actors >= 1, got {n_actors}; pass --actors 1 or more")
        one_shot_space(space_spec)  # fail here, not in every actor
        self.space_spec = space_spec
        self.weights_ref = weights if isinstance(weights, ray.ObjectRef) else ray.put(dict(weights))
        self.data_ref = data if isinstance(data, ray.ObjectRef) else ray.put(data)
        cfg = (eval_cfg or EvalConfig()).model_dump()
        self.actors = [
            EvaluatorActor.options(num_cpus=num_cpus, num_gpus=num_gpus).remote(
                space_spec, cfg, threads)
            for _ in range(n_actors)
        ]
        self.in_flight_per_actor = in_flight_per_actor
        self.resubmitted = 0

    def evaluate(self, archs: Sequence[dict[str, Any]], progress: bool = False,
                 max_attempts: int = 3) -> Iterator[EvalResult]:
        """Yield one result per architecture, as they finish (completion order)."""
        todo = list(range(len(archs)))[::-1]
        pending: dict[ray.ObjectRef, tuple[int, int, int]] = {}  # ref -> (index, actor, attempt)
        load = [0] * len(self.actors)
        done: set[int] = set()
        attempts = dict.fromkeys(range(len(archs)), 0)
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=len(archs), desc="evaluate", unit="subnet", disable=None)

        def submit(i: int, avoid: int | None = None) -> None:
            order = sorted(range(len(self.actors)), key=lambda a: (a == avoid, load[a]))
            a = order[0]
            attempts[i] += 1
            pending[self.actors[a].evaluate.remote(i, dict(archs[i]), [self.weights_ref, self.data_ref])] = (
                i, a, attempts[i])
            load[a] += 1

        try:
            while todo and len(pending) < len(self.actors) * self.in_flight_per_actor:
                submit(todo.pop())
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                ref = ready[0]
                i, a, attempt = pending.pop(ref)
                load[a] -= 1
                try:
                    res: EvalResult = ray.get(ref)
                except ray.exceptions.RayActorError as e:
                    # The actor died and Ray's own retries are spent: run it elsewhere.
                    # (An exception raised *by* the evaluation propagates: it would fail again.)
                    if attempt >= max_attempts:
                        raise
                    log.warning("evaluation of #%d failed on actor %d (%s); resubmitting", i, a, type(e).__name__)
                    self.resubmitted += 1
                    submit(i, avoid=a)
                    continue
                if i not in done:
                    done.add(i)
                    if bar is not None:
                        bar.update(1)
                    yield res
                if todo:
                    submit(todo.pop())
        finally:
            if bar is not None:
                bar.close()

    def evaluate_all(self, archs: Sequence[dict[str, Any]], progress: bool = False) -> list[EvalResult]:
        """All results, in input order."""
        return sorted(self.evaluate(archs, progress), key=lambda r: r.index)

    def actor_pids(self) -> list[int]:
        return ray.get([a.pid.remote() for a in self.actors])

    def shutdown(self) -> None:
        for a in self.actors:
            ray.kill(a)
        self.actors = []
