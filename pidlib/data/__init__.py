"""Questions: the six GQA tasks, real GQA loaders and the procedural Mini-GQA."""
