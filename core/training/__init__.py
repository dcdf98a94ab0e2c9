"""Training: configuration and presets, the loop, the transition memory, background runs
(in-process, in a worker process, or over several with DDP), and the baselines that train
(SASRec-style) with fitting baselines by name."""
