"""Estimators: Gaussian PID, PID Flow, canonical systems, discrete cross-check (no model code)."""
