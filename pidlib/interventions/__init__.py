"""Attention knockouts: specs (no torch), masks, the knockout hook, clean-prefix replay, sweeps."""
