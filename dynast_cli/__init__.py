"""dynast: attention-based, exemplar-guided image generation (DynaST, StyA2K, AdaAttN).

The public Python API (imported on first use, so ``import dynast_cli`` stays light)::

    import dynast_cli

    dynast_cli.list_methods()                                  # ['adaattn', 'a2k', 'adain', 'dynast', 'optimize']
    out = dynast_cli.stylize("content.jpg", "style.jpg")       # (3, H, W) float in [0, 1]: `dynast style`'s result
    out = dynast_cli.stylize(photo, [style_a, style_b], method="adaattn", mix=[0.7, 0.3], alpha=0.8)
    method = dynast_cli.build_method("dynast", weights="none")  # a method object: prepare_style / stylize

See :func:`dynast_cli.api.stylize`, :func:`dynast_cli.styles.build_method`, :func:`dynast_cli.styles.list_methods`.
"""

__version__ = "0.1.0"
__all__ = ["build_method", "list_methods", "stylize"]

_API = {"stylize": "dynast_cli.api", "build_method": "dynast_cli.styles", "list_methods": "dynast_cli.styles"}


def __getattr__(name: str):
    if name in _API:
        import importlib

        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'dynast_cli' has no attribute '{name}'")


def __dir__() -> list[str]:
    return sorted([*globals(), *_API])
