"""The supernet's settings: its training data (``accuracy.supernet.data``), training (``...train``) and subnet
evaluation (``...eval``), as pydantic models without torch, so that reading and validating a config (``hwnas
validate``, ``orchestrator.config``) does not import torch (about 2.5 s of every command here). The code that
uses them (``supernet.data``, ``supernet.train``, ``supernet.evaluate``) imports them from here."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from orchestrator.schema import Schema, Seed


class DataConfig(Schema):
    name: Literal["digits", "npz", "imagefolder", "cifar10", "cifar100", "synthetic"] = "digits"
    root: str | None = Field(None, description="npz: the .npz file; imagefolder: the directory of class "
                                               "sub-folders; cifar10/100: the directory of the python-pickle files")
    resolution: int = Field(32, ge=8, description="images are scaled to resolution x resolution")
    resize: bool = Field(False, description="imagefolder: resize every image to the resolution; without it a "
                                            "folder of mixed image sizes is refused")
    val_fraction: float = Field(0.2, gt=0, lt=1, description="share of the training images held out (per class) "
                                                             "as the validation split")
    crop_padding: int | None = Field(None, ge=0, description="random-crop padding in pixels (default: 4, as for "
                                                            "CIFAR; 0 for digits)")
    workers: int = Field(0, ge=0, description="imagefolder: DataLoader worker processes reading the files")
    norm_images: int = Field(2000, ge=16, description="imagefolder: training images read to compute the "
                                                      "per-channel mean and std")
    synthetic_size: int = Field(2048, ge=16)
    num_classes: int = Field(10, ge=2, description="synthetic only")
    max_train: int | None = Field(None, ge=16, description="use only N training images (a seeded random subset; "
                                                           "quick runs)")
    seed: Seed = 0


class TrainConfig(Schema):
    epochs: int = Field(5, ge=1)
    batch_size: int = Field(64, ge=1)
    optimizer: Literal["sgd", "adamw"] = "sgd"
    lr: float = Field(0.05, gt=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: float = Field(1e-4, ge=0)
    warmup_epochs: float = Field(1.0, ge=0)
    sampling: Literal["sandwich", "uniform"] = Field(
        "sandwich", description="the subnets of a step: sandwich (BigNAS/OFA: largest, smallest and n_random "
                                "random ones, the others distilled from the largest) or uniform (SPOS: n_random "
                                "random ones, at least one, each from the labels)")
    n_random: int = Field(2, ge=0, description="random subnets per step (sandwich: besides largest and smallest)")
    distill: bool = Field(True, description="sandwich: in-place distillation from the largest subnet")
    label_smoothing: float = Field(0.1, ge=0, lt=1)
    grad_clip: float | None = Field(5.0, gt=0)
    amp: Literal["auto", "on", "off"] = Field("auto", description="mixed precision (CUDA only; auto = on with CUDA)")
    channels_last: Literal["auto", "on", "off"] = "auto"
    augment: bool = True
    device: str = Field("auto", description="'auto' (CUDA if present), 'cpu', 'cuda' or 'cuda:N'")
    seed: Seed = 0


class EvalConfig(Schema):
    calib_batches: int = Field(8, ge=1, description="training batches for BatchNorm recalibration")
    calib_batch_size: int = Field(64, ge=2)
    batch_size: int = Field(256, ge=1, description="validation batch size")
    max_val: int | None = Field(None, ge=1, description="evaluate on the first N validation images only (the split is "
                                                        "interleaved by class: N images hold every class in its share)")
    device: str = "cpu"
