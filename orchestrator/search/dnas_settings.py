"""The DNAS sweep's settings (``search.dnas``), a pydantic model without torch (see
``orchestrator.supernet.settings``); ``orchestrator.search.dnas`` runs the sweep."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from orchestrator.schema import Schema
from orchestrator.supernet.settings import DataConfig


class DnasConfig(Schema):
    """Settings of the DNAS sweep (``search.dnas``)."""

    lambdas: list[float] = Field(default_factory=lambda: [0.0, 0.3, 1.0, 3.0, 10.0],
                                 description="latency weights of the sweep (unit-free: the penalty spans [0, 1])")
    warmup_epochs: int = Field(1, ge=0, description="weight-only epochs (sampled paths), shared by every lambda")
    epochs: int = Field(4, ge=1, description="search epochs per lambda (weights and logits in turn)")
    batch_size: int = Field(64, ge=2)
    lr: float = Field(0.05, gt=0, description="SGD learning rate of the weights")
    arch_lr: float = Field(0.05, gt=0, description="Adam learning rate of the architecture logits")
    tau_start: float = Field(5.0, gt=0, description="Gumbel-softmax temperature at the first search epoch")
    tau_end: float = Field(0.5, gt=0, description="temperature at the last search epoch (exponential decay)")
    arch_fraction: float = Field(0.2, gt=0, lt=1, description="share of the training set for the logits")
    max_steps: int | None = Field(None, ge=1, description="cap on the steps of an epoch (quick runs)")
    samples: int = Field(0, ge=0, description="architectures sampled from each lambda's final distribution "
                                              "besides its most likely one (FBNet samples 6)")
    skip_penalty: float | None = Field(None, ge=0, description="weight mu of mu * mean over layers of the "
                                                               "probability of the view's parameter-free ops "
                                                               "(collapse_ops: nb201 none, skip_connect, "
                                                               "avg_pool_3x3; fbnet skip), added to the "
                                                               "architecture loss against the collapse onto them; "
                                                               "None = the view's default_skip_penalty (nb201 "
                                                               "0.1, fbnet 0); 0 = off")
    collapse_ops: list[str] | None = Field(None, description="the ops skip_penalty penalises; None = the view's "
                                                               "(nb201: none, skip_connect, avg_pool_3x3; "
                                                               "else skip, "
                                                               "skip_connect, none)")
    aux_skip: bool = Field(False, description="DARTS- (Chu et al., ICLR 2021): an auxiliary skip connection "
                                              "beta * x on every edge of the architecture step's mixed forward, "
                                              "beta decaying linearly 1 -> 0 over each lambda's steps; nb201 only")
    device: str = Field("cpu", description="torch device: cpu, cuda, auto")
    data: DataConfig | None = Field(None, description="training data; None = accuracy.supernet.data")
    supernet_options: dict[str, Any] | None = Field(None, description="space options of the searched supernet "
                                                                       "(scaled down); None = "
                                                                       "accuracy.supernet.options")
