"""hwnas: hardware-aware neural architecture search on Ray, PyTorch, Optuna and MLflow."""

__version__ = "0.1.0"
