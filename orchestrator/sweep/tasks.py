"""Per-target work as Ray tasks: the shared context and each distinct source set put in the object store
once, results streamed back as they finish."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from orchestrator.latency.transfer import SourceSet
from orchestrator.sweep.target import SweepShared, TargetInput, TargetReport, run_target


def run_targets(shared: SweepShared, targets: Sequence[TargetInput],
                sources_for: Callable[[str], SourceSet | None], *, use_ray: bool = True,
                keep_predictor: bool = False, progress: Callable[[TargetReport], None] | None = None
                ) -> list[TargetReport]:
    """``run_target`` for every target (Ray tasks unless ``use_ray`` is False), reports in target order;
    ``progress`` sees each report as it arrives."""
    return fan_out(run_target, shared, targets, sources_for, use_ray=use_ray, progress=progress,
                   keep_predictor=keep_predictor)


def fan_out(fn: Callable[..., Any], shared: SweepShared, targets: Sequence[TargetInput],
            sources_for: Callable[[str], SourceSet | None], *, use_ray: bool = True,
            progress: Callable[[Any], None] | None = None, **kw: Any) -> list[Any]:
    """``fn(shared, target, sources, **kw)`` per target, as Ray tasks: the shared context and each distinct
    source set put in the object store once. Results in target order."""
    if not use_ray:
        out = []
        for t in targets:
            out.append(fn(shared, t, sources_for(t.name), **kw))
            if progress is not None:
                progress(out[-1])
        return out
    import ray

    task = ray.remote(num_cpus=1, max_retries=2)(fn)
    shared_ref = ray.put(shared)
    src_refs: dict[int, Any] = {}
    refs = {}
    for i, t in enumerate(targets):
        src = sources_for(t.name)
        if src is not None and id(src) not in src_refs:
            src_refs[id(src)] = ray.put(src)
        refs[task.remote(shared_ref, t, None if src is None else src_refs[id(src)], **kw)] = i
    done: dict[int, Any] = {}
    pending = list(refs)
    while pending:
        ready, pending = ray.wait(pending, num_returns=1)
        done[refs[ready[0]]] = res = ray.get(ready[0])
        if progress is not None:
            progress(res)
    return [done[i] for i in range(len(targets))]
