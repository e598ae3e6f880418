"""Search: Pareto utilities (and, next, the Optuna driver and the exact MILP front)."""
