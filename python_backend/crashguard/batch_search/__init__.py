"""Safe benchmarking: the largest micro-batch that fits under a memory budget, found with real training steps."""
