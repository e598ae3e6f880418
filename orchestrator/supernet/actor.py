"""Ray wrappers around the supernet trainer.

- ``SupernetTrainerActor``: one Ray actor runs the training (CPU or one GPU).
  It is a threaded actor, so ``progress()`` answers while ``fit()`` runs; if the
  actor dies, Ray restarts it and ``fit`` resumes from the last checkpoint.
- ``train_supernet``: the driver side: starts the actor, shows progress (epoch,
  loss, images/s) while it runs, returns the summary and a reference to the
  trained weights in the object store.
- ``train_data_parallel``: with several GPUs (or CPU processes), data-parallel
  training with Ray Train's ``TorchTrainer``: every worker runs the same
  sandwich subnets on its shard of each batch, gradients are averaged with an
  all-reduce before the optimiser step, rank 0 writes the checkpoints.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

import ray
import torch

from orchestrator.supernet.checkpoint import load_checkpoint
from orchestrator.supernet.data import DataConfig, load_dataset
from orchestrator.supernet.spec import one_shot_space, with_classes
from orchestrator.supernet.train import CHECKPOINT_NAME, SupernetTrainer, TrainConfig
from search_spaces.base import SpaceSpec

log = logging.getLogger(__name__)


def _make_trainer(space_spec: dict[str, Any], data_cfg: dict[str, Any], train_cfg: dict[str, Any],
                  checkpoint_dir: str | None, grad_sync: Any = None) -> SupernetTrainer:
    data = load_dataset(DataConfig(**data_cfg))
    space = one_shot_space(with_classes(space_spec, data.num_classes))
    return SupernetTrainer(space, data, TrainConfig(**train_cfg), checkpoint_dir, grad_sync=grad_sync)


@ray.remote(max_restarts=2, max_task_retries=2, max_concurrency=2)
class SupernetTrainerActor:
    def __init__(self, space_spec: dict[str, Any], data_cfg: dict[str, Any], train_cfg: dict[str, Any],
                 checkpoint_dir: str | None, threads: int | None = None) -> None:
        if threads:
            torch.set_num_threads(threads)
        self.trainer = _make_trainer(space_spec, data_cfg, train_cfg, checkpoint_dir)
        self._lock = threading.Lock()
        self._progress: dict[str, Any] = {"epoch": self.trainer.epoch, "epochs": self.trainer.cfg.epochs}

    def _on_progress(self, p: dict[str, Any]) -> None:
        with self._lock:
            self._progress = dict(p)

    def fit(self, stop_after: int | None = None) -> dict[str, Any]:
        return self.trainer.fit(progress=self._on_progress, stop_after=stop_after)

    def progress(self) -> dict[str, Any]:
        with self._lock:
            return dict(self._progress)

    def weights(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().cpu() for k, v in self.trainer.net.state_dict().items()}

    def pid(self) -> int:
        import os

        return os.getpid()


def train_supernet(space_spec: SpaceSpec, data_cfg: DataConfig, train_cfg: TrainConfig,
                   checkpoint_dir: str | Path | None, num_cpus: float = 1, num_gpus: float = 0,
                   threads: int | None = None, show_progress: bool = True,
                   stop_after: int | None = None) -> tuple[dict[str, Any], ray.ObjectRef]:
    """Train on a Ray actor; returns (summary, object ref of the trained state_dict)."""
    actor = SupernetTrainerActor.options(num_cpus=num_cpus, num_gpus=num_gpus).remote(
        space_spec.model_dump(), data_cfg.model_dump(), train_cfg.model_dump(),
        None if checkpoint_dir is None else str(Path(checkpoint_dir).resolve()), threads)
    done = actor.fit.remote(stop_after)
    bar = None
    if show_progress:
        from tqdm import tqdm

        bar = tqdm(total=train_cfg.epochs, desc="supernet", unit="epoch", disable=None)
    try:
        while True:
            ready, _ = ray.wait([done], timeout=1.0)
            if bar is not None:
                p = ray.get(actor.progress.remote())
                bar.n = max(0, int(p.get("epoch", 1)) - (0 if ready else 1))
                if "loss" in p:
                    bar.set_postfix(step=f"{p['step']}/{p['steps']}", loss=f"{p['loss']:.3f}",
                                    img_s=f"{p['images_per_s']:.0f}", refresh=False)
                bar.refresh()
            if ready:
                break
        summary = ray.get(done)
        weights = actor.weights.remote()
        ray.wait([weights])
        return summary, weights
    finally:
        if bar is not None:
            bar.close()


def _dp_loop(config: dict[str, Any]) -> None:
    import torch.distributed as dist

    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()

    def all_reduce_grads(net: torch.nn.Module) -> None:
        grads = [p.grad for p in net.parameters() if p.grad is not None]
        if world > 1 and grads:
            flat = torch.cat([g.reshape(-1) for g in grads])
            dist.all_reduce(flat)
            flat /= world
            i = 0
            for g in grads:
                g.copy_(flat[i:i + g.numel()].view_as(g))
                i += g.numel()

    train_cfg = dict(config["train_cfg"])
    if torch.cuda.is_available():
        train_cfg["device"] = str(ray.train.torch.get_device())
    trainer = _make_trainer(config["space_spec"], config["data_cfg"], train_cfg,
                            config["checkpoint_dir"] if rank == 0 else None, grad_sync=all_reduce_grads)
    if rank != 0 and config["checkpoint_dir"]:
        # Non-zero ranks resume from rank 0's checkpoint too (same file on a shared or local disk).
        trainer.checkpoint_dir = Path(config["checkpoint_dir"])
    trainer.resume()
    while trainer.epoch < trainer.cfg.epochs:
        rec = trainer.train_epoch(shard=(rank, world))
        if rank == 0:
            trainer.save()
        ray.train.report({**rec, "world_size": world})


def train_data_parallel(space_spec: SpaceSpec, data_cfg: DataConfig, train_cfg: TrainConfig,
                        checkpoint_dir: str | Path, num_workers: int, use_gpu: bool,
                        storage_path: str | Path) -> dict[str, Any]:
    """Data-parallel supernet training with Ray Train; returns the history rank 0 checkpointed."""
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    t0 = time.perf_counter()
    trainer = TorchTrainer(
        _dp_loop,
        train_loop_config={"space_spec": space_spec.model_dump(), "data_cfg": data_cfg.model_dump(),
                           "train_cfg": train_cfg.model_dump(), "checkpoint_dir": str(Path(checkpoint_dir).resolve())},
        scaling_config=ScalingConfig(num_workers=num_workers, use_gpu=use_gpu),
        run_config=RunConfig(storage_path=str(Path(storage_path).resolve()), name="supernet_dp"),
    )
    trainer.fit()
    path = Path(checkpoint_dir).resolve() / CHECKPOINT_NAME
    ck = load_checkpoint(path)
    return {"epoch": ck["epoch"], "history": ck["history"], "world_size": num_workers, "checkpoint": str(path),
            "wall_s": time.perf_counter() - t0}
