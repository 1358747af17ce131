"""dynast: attention-based, exemplar-guided image generation (DynaST, StyA2K, AdaAttN)."""

__version__ = "0.1.0"
