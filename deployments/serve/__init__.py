"""Ray plumbing of the GPU side: the worker deployment, its registry, text inbox and metrics."""
