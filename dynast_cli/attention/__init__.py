"""Attention functions, one module per paper idea; pure functions on tensors, shapes in docstrings.
Naive twins live in :mod:`dynast_cli.attention.reference` (tests and bench only)."""
