"""Multi-data multi-task training: datasets, samplers, loss combination, trainer."""
