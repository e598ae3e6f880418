"""The pipeline, as stages: plan (config resolved), context (run dir, Ray), proxy, accuracy, search (the
proxy search), targets (the sweep, driver side), extras (front measurement, export, refinement, the
per-device baseline), records (files, MLflow, summary), run (the wiring)."""

from orchestrator.pipeline.context import STATE_FILE
from orchestrator.pipeline.run import run_pipeline

__all__ = ["STATE_FILE", "run_pipeline"]
