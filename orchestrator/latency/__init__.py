"""Latency: devices, measurement, predictors, monotonicity (SRCC) and transfer."""
