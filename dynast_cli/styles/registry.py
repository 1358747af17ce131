"""The style-method registry: every method declares itself once, in its own module.

As a timm model is one decorated function with its pretrained config, a style method is one class
decorated with :func:`register_method`, which records a :class:`MethodSpec`: its name and help, how it
is built (the class's ``build``), its default weights (a manifest entry), its memory profile for
``--max-memory``, its default ``--refine`` steps, the options it accepts, and whether and how
``dynast train style`` trains it. Everything outside ``styles/`` (the CLI's help, ``dynast style``,
``eval``, ``bench``, ``train``, :mod:`dynast_cli.memory`, video) reads the spec instead of naming
methods::

    from dynast_cli.styles import build_method, get_spec, list_methods

    list_methods()                          # ['adaattn', 'a2k', 'adain', 'dynast', 'optimize']
    method = build_method("adaattn", weights=None, device="cpu")
    get_spec("dynast").refine               # 10

The built-in methods are registered whenever this module is usable: importing it imports its package
first, :mod:`dynast_cli.styles`, whose ``__init__`` imports each method module (in the order the help
lists them).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch

from dynast_cli.errors import UsageError

#: The method ``dynast style`` runs without ``--method``.
DEFAULT_METHOD = "dynast"


@dataclass(frozen=True)
class MemoryProfile:
    """What ``--max-memory`` needs to know of a method (read by :func:`dynast_cli.memory.plan_style`).

    ``bytes_per_pixel``: activations per padded content pixel (encoder, attention levels, decoder),
    fitted to measured peaks by ``docs/bench/calibrate_memory.py``. ``style_bytes(method, style_hw,
    caps=None)``: bytes of one prepared style of ``style_hw`` pixels (``caps``: style key positions kept
    at (relu3_1, relu4_1/relu5_1), for ``cut_keys``). ``tile``: what the method's ``tile`` attribute
    counts, the working set a budget may shrink: ``"elements"`` (score-matrix elements per attention
    chunk), ``"queries"`` (query positions per chunk, each costing ``query_bytes(method, style_hws)``),
    or None (no tile). ``cut_keys``: when even the smallest tile does not fit, the method may keep fewer
    style key positions (``method.key_caps`` / ``method.limit_keys(cap)``; AdaAttN's ``max_sample``).
    """

    bytes_per_pixel: float
    style_bytes: Callable[..., int]
    tile: str | None = None
    query_bytes: Callable[[Any, Sequence[tuple[int, int]]], int] | None = None
    cut_keys: bool = False


@dataclass(frozen=True)
class Training:
    """How ``dynast train style --method NAME`` trains a method (run by :mod:`dynast_cli.train.style`).

    ``task``: the training task (``"attention"``: the learned attention layers and decoder of ``model``,
    exported as ``export``; ``"prune_mask"``: the DynaST prune mask, or with ``--train-decoder`` its
    decoder). ``options``: the ``train style`` options that apply to it (``init``, ``content_weight``,
    ``video``, ``train_decoder``, ``locality``). ``note``: what the help says of it.
    """

    task: str
    model: type | None = None
    export: str = ""
    options: tuple[str, ...] = ()
    note: str = ""


@dataclass(frozen=True)
class MethodSpec:
    """One registered style method (see the module docstring).

    ``build(weights=None, device=cpu, vgg=None, **options)`` makes it; ``options`` maps each keyword it
    accepts beyond those to its help; ``title`` names it in notices; ``default_weights``: the manifest
    entry it loads without ``--weights`` (None: none of its own); ``benchmark``: timed by ``dynast bench
    --e2e`` (not the slow pixel optimisation).
    """

    name: str
    summary: str
    build: Callable[..., Any]
    title: str = ""
    default_weights: str | None = None
    memory: MemoryProfile | None = None
    refine: int = 0
    #: long side it paints at when ``--work-size`` is not given (None: the full output size)
    work_size: int | None = None
    options: Mapping[str, str] = field(default_factory=dict)
    training: Training | None = None
    benchmark: bool = True


#: name -> spec, in registration order (the order the help lists them).
METHODS: dict[str, MethodSpec] = {}


def register_method(name: str, summary: str, **spec: Any) -> Callable[[type], type]:
    """Class decorator: ``@register_method("adain", "...", memory=..., refine=0)`` on a style-method class
    with a ``build`` classmethod; records its :class:`MethodSpec` in :data:`METHODS` and as ``cls.spec``."""

    def deco(cls: type) -> type:
        cls.spec = METHODS[name] = MethodSpec(name, summary, cls.build, **spec)
        return cls

    return deco


def list_methods() -> list[str]:
    """The registered method names, in the order the help lists them."""
    return list(METHODS)


def get_spec(name: str) -> MethodSpec:
    """The spec of method ``name`` (:class:`UsageError` naming the known ones otherwise)."""
    if name not in METHODS:
        raise UsageError(f"unknown style method '{name}' (choose from {', '.join(sorted(METHODS))})")
    return METHODS[name]


def build_method(
    name: str = DEFAULT_METHOD, weights: str | Path | None = None, device: str | torch.device = "cpu",
    vgg: str | Path | None = None, **options: Any,
) -> Any:
    """Build style method ``name`` (``weights``: a file, ``"none"`` for the parameter-free model, or None
    for the method's default; ``vgg``: the ImageNet VGG16 file; ``options``: those its spec lists)."""
    spec = get_spec(name)
    unknown = sorted(set(options) - set(spec.options))
    if unknown:
        raise UsageError(f"style method '{name}' takes no option '{unknown[0]}' "
                         f"(its options: {', '.join(spec.options) or 'none'})")
    return spec.build(weights=weights, device=torch.device(device), vgg=vgg, **options)


def method_options(name: str, **given: Any) -> dict[str, Any]:
    """Of the method-specific values a command has (e.g. ``steps=200`` from ``--steps``), those that method
    ``name`` accepts; {} for an unknown name (building it reports that)."""
    spec = METHODS.get(name)
    return {k: v for k, v in given.items() if spec is not None and k in spec.options}


def methods_with(option: str) -> list[str]:
    """The methods ``dynast train style`` trains with ``option`` (e.g. ``"init"``), in registry order."""
    return [s.name for s in METHODS.values() if s.training is not None and option in s.training.options]


def trainable_methods() -> list[str]:
    """The methods ``dynast train style`` can train, in registry order."""
    return [s.name for s in METHODS.values() if s.training is not None]


def method_help() -> str:
    """``dynast (default), adaattn, a2k, adain or optimize.``: the ``--method`` help of ``dynast style``."""
    names = [f"{n} (default)" if n == DEFAULT_METHOD else n for n in
             [DEFAULT_METHOD] + [n for n in list_methods() if n != DEFAULT_METHOD]]
    return f"{', '.join(names[:-1])} or {names[-1]}."


def parse_method_spec(spec: str) -> tuple[str, str | None, int | None]:
    """``METHOD[:WEIGHTS][+refineN]`` (``dynast eval style --methods``) -> (method, weights or None,
    refinement steps or None for the method's default). E.g. ``adain+refine10``, ``dynast:none+refine0``."""
    refine = None
    found = re.fullmatch(r"(.*)\+refine(\d+)", spec.strip())
    if found:
        spec, refine = found.group(1), int(found.group(2))
    method, _, weights = spec.strip().partition(":")
    return method, weights or None, refine
