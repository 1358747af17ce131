"""The Typer application and the error policy shared by every subcommand.

Each subcommand lives in its own module of this package (``style.py``, ``video.py``, ...) and
registers itself on :data:`app` (or on :data:`train_app` / :data:`eval_app` / :data:`convert_app`)
with :func:`command`. The modules hold no logic beyond turning options into a call of an importable
pipeline.

Error policy: a :class:`~dynast_cli.errors.DynastError` prints ``error: <file>: <problem>`` on one
line and exits with its code; any other exception prints one line naming its type and asks for
``--debug``; ``--debug`` (or ``DYNAST_DEBUG=1``) lets the traceback through.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import typer
from rich.console import Console

from dynast_cli.errors import DynastError

err_console = Console(stderr=True, highlight=False, soft_wrap=True)

def _debug_from_env() -> bool:
    return os.environ.get("DYNAST_DEBUG", "") not in ("", "0")


_state = {"debug": _debug_from_env()}


def debug_enabled() -> bool:
    return _state["debug"]


def _report(message: str) -> None:
    # markup=False: file names may contain brackets
    err_console.print(f"error: {message}", markup=False)


class DynastCommand(typer.core.TyperCommand):
    """A Typer command that turns exceptions into one clear line and an exit code."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except DynastError as exc:
            if debug_enabled():
                raise
            _report(str(exc))
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            if debug_enabled():
                raise
            _report("interrupted")
            ctx.exit(130)
        except (typer.Exit, typer.Abort):
            raise
        except Exception as exc:  # an internal error: still one line unless --debug
            if debug_enabled() or type(exc).__module__.startswith(("typer", "click")):
                raise
            _report(f"{type(exc).__name__}: {exc} (run with --debug for the traceback)")
            ctx.exit(70)


def _new_app(help: str) -> typer.Typer:
    return typer.Typer(
        help=help,
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
        context_settings={"help_option_names": ["-h", "--help"]},
    )


app = _new_app("Attention-based, exemplar-guided image generation (DynaST, StyA2K, AdaAttN).")
train_app = _new_app("Train the project's models (style decoders and attention, pose, face).")
eval_app = _new_app("Measure quality and speed (content/style losses, temporal consistency).")
convert_app = _new_app("Convert official .pth checkpoints into dynast safetensors.")
app.add_typer(train_app, name="train")
app.add_typer(eval_app, name="eval")
app.add_typer(convert_app, name="convert")


def command(target: typer.Typer = app, name: str | None = None, **kwargs: Any):
    """``@command()`` registers a subcommand with dynast's error policy."""
    return target.command(name=name, cls=DynastCommand, **kwargs)


def _version(value: bool) -> None:
    if value:
        from dynast_cli import __version__

        typer.echo(f"dynast {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors."),
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """dynast: style transfer, pose transfer and edge-to-face with attention."""
    _state["debug"] = debug or _debug_from_env()


def run(argv: list[str] | None = None) -> None:
    """Entry point of the ``dynast`` console script."""
    try:
        app(args=argv, prog_name="dynast")
    except DynastError as exc:  # raised outside a command (e.g. in a callback)
        if debug_enabled():
            raise
        _report(str(exc))
        sys.exit(exc.exit_code)
