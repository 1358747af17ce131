"""Style methods: one module each, registered in :mod:`dynast_cli.styles.registry`, all running the one
path of :class:`dynast_cli.styles.base.StyleMethod`; ``--refine`` and pixel optimisation in
:mod:`dynast_cli.styles.refine`.

A new method is one module here (its :func:`~dynast_cli.styles.registry.register_method` class) plus its
model and attention code, and its name in the import line below.
"""

# Importing a method module registers its method; this order is the order of `list_methods()` and of the
# help (`dynast style --method`, `dynast train style --method`), so keep it as written.
from dynast_cli.styles import adaattn, a2k, adain, dynast, optimize  # noqa: F401  # isort: skip
from dynast_cli.styles.registry import (  # noqa: F401
    DEFAULT_METHOD,
    METHODS,
    MethodSpec,
    build_method,
    get_spec,
    list_methods,
    method_options,
    parse_method_spec,
    register_method,
)
