"""The ``dynast`` command line: a thin Typer layer over :mod:`dynast_cli.pipelines`.

Importing this package registers every subcommand module on :data:`app`.
"""

from __future__ import annotations

import importlib

from dynast_cli.cli.app import app, convert_app, eval_app, train_app  # noqa: F401

# One module per subcommand (or family). A module that is missing while it is being written is
# skipped, so the rest of the tool keeps working.
_COMMAND_MODULES = [
    "style", "video", "pose", "face", "bench", "train", "train_dynast", "evaluate", "convert", "convert_dynast",
    "fetch",
]
for _name in _COMMAND_MODULES:
    try:
        importlib.import_module(f"dynast_cli.cli.{_name}")
    except ModuleNotFoundError as _exc:
        if _exc.name != f"dynast_cli.cli.{_name}":
            raise


def main() -> None:
    from dynast_cli.cli.app import run

    run()
