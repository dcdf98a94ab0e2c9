"""Training: configuration and presets, the loop, the transition memory, and background
runs (in-process, in a worker process, or over several with DDP)."""
