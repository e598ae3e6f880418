"""The one-proxy device sweep: per target, k measurements, a decision with a confidence, a front searched
over the whole domain, and its quality against the truth where the truth is known."""

from orchestrator.sweep.decision import ADAPT, REUSE, Decision, decide, srcc_lower_bound
from orchestrator.sweep.judge import finalize, render
from orchestrator.sweep.rounds import Rounds, first_round, pick_k, propose
from orchestrator.sweep.target import (
    SweepSettings,
    SweepShared,
    TargetInput,
    TargetReport,
    front_of,
    run_target,
)
from orchestrator.sweep.tasks import fan_out, run_targets

__all__ = ["ADAPT", "REUSE", "Decision", "Rounds", "SweepSettings", "SweepShared", "TargetInput", "TargetReport",
           "decide", "fan_out", "finalize", "first_round", "front_of", "pick_k", "propose", "render", "run_target",
           "run_targets", "srcc_lower_bound"]
