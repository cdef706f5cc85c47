"""Layer-wise features: pooled V / L and the answer targets Y of a model on a task."""
