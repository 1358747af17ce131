"""User-facing errors and the exit codes of the ``dynast`` command.

Anything a user can cause (a missing file, a corrupt image, a wrong checkpoint) raises
:class:`DynastError` with a one-line message that names the file and the problem. The CLI prints
that line and exits non-zero; ``--debug`` shows the traceback. Library users catch it like any
exception.

:data:`EXIT_CODES` is the one table of exit codes: the error classes take their codes from it, the
CLI's error policy (:mod:`dynast_cli.cli.app`) uses it for usage errors, internal errors and
interruptions, and the README's table is checked against it (``tests/test_cli_policy.py``;
:func:`exit_code_table` prints it as Markdown).
"""

from __future__ import annotations

from pathlib import Path

EXIT_OK = 0
EXIT_USAGE = 1
EXIT_INPUT = 2
EXIT_WEIGHTS = 3
EXIT_OUTPUT = 4
EXIT_BATCH = 5
EXIT_MEMORY = 6
EXIT_INTERNAL = 70
EXIT_INTERRUPTED = 130

#: Exit code -> what it means, for every command.
EXIT_CODES: dict[int, str] = {
    EXIT_OK: "success",
    EXIT_USAGE: "usage error: an unknown command, option or method, a missing argument, an option value that "
    "is malformed or out of range (`--alpha 2`, `--max-memory abc`, `--mix x`)",
    EXIT_INPUT: "bad input file or folder: missing, unreadable, not an image or video, corrupt",
    EXIT_WEIGHTS: "missing, corrupt or mismatching weights or checkpoint",
    EXIT_OUTPUT: "the output cannot be written: it exists (without `--overwrite`), its folder or the cache is "
    "not writable, or its format is unknown",
    EXIT_BATCH: "some files of a batch failed: the files written are listed, then one line names the failures",
    EXIT_MEMORY: "a `--max-memory` budget that cannot be met (the estimated minimum is named)",
    EXIT_INTERNAL: "internal error (a bug): one line, `--debug` shows the traceback",
    EXIT_INTERRUPTED: "interrupted (Ctrl-C)",
}


def exit_code_table() -> str:
    """:data:`EXIT_CODES` as the Markdown table of the README."""
    rows = ["| exit code | meaning |", "|---:|---|"]
    rows += [f"| {code} | {meaning} |" for code, meaning in EXIT_CODES.items()]
    return "\n".join(rows)


class DynastError(Exception):
    """An error caused by the user's input, with a one-line message meant for them."""

    exit_code = EXIT_USAGE

    def __init__(self, message: str, path: str | Path | None = None):
        self.path = None if path is None else Path(path)
        self.message = message  # without the path
        super().__init__(f"{path}: {message}" if path is not None else message)


class UsageError(DynastError):
    """A bad option value: malformed, out of range, unknown, or not valid with the other options.

    The message is one line that names the option (``--alphas takes numbers between 0 and 1, got 'x'``).
    Not Click's ``UsageError``: the command raises it and the CLI reports it like any :class:`DynastError`.
    """

    exit_code = EXIT_USAGE


class InputError(DynastError):
    """A bad input file or folder (missing, unreadable, not an image, corrupt)."""

    exit_code = EXIT_INPUT


class WeightsError(DynastError):
    """A missing, corrupt or mismatching weights/checkpoint file."""

    exit_code = EXIT_WEIGHTS


class OutputError(DynastError):
    """The output cannot be written (exists without --overwrite, unwritable folder, unknown format)."""

    exit_code = EXIT_OUTPUT


class BatchError(DynastError):
    """Some items of a batch failed; the others were written.

    ``written``: the files that were written before the error was raised, so that the CLI can list
    them. Give them to the constructor, or set ``report`` to an object with a ``written`` list (the
    batch pipelines attach their :class:`~dynast_cli.pipelines.batch.BatchReport`).
    """

    exit_code = EXIT_BATCH

    def __init__(self, message: str, path: str | Path | None = None, written=None, report=None):
        super().__init__(message, path)
        self._written = None if written is None else [Path(p) for p in written]
        self.report = report

    @property
    def written(self) -> list[Path]:
        if self._written is not None:
            return list(self._written)
        return [Path(p) for p in (getattr(self.report, "written", None) or [])]
