"""Layers shared by the models (normalisations, residual blocks, SPADE, decoders)."""
