"""LLaVA-family models: registry, loading, tiny builders, prompts, answers, module lookup, hooks."""
