"""``dynast style --method dynast``: DynaST coarse-to-fine matching for style transfer (being written)."""
