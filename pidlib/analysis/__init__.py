"""Layer-wise PID jobs, summaries and the claims of every chapter."""
