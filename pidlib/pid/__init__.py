"""Estimators: Gaussian PID, preprocessing, PID Flow, canonical systems (no model or chart code)."""
