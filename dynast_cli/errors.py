"""User-facing errors.

Anything a user can cause (a missing file, a corrupt image, a wrong checkpoint) raises
:class:`DynastError` with a one-line message that names the file and the problem. The CLI prints
that line and exits non-zero; ``--debug`` shows the traceback. Library users catch it like any
exception.
"""

from __future__ import annotations

from pathlib import Path


class DynastError(Exception):
    """An error caused by the user's input, with a one-line message meant for them."""

    exit_code = 1

    def __init__(self, message: str, path: str | Path | None = None):
        self.path = None if path is None else Path(path)
        super().__init__(f"{path}: {message}" if path is not None else message)


class InputError(DynastError):
    """A bad input file or folder (missing, unreadable, not an image, corrupt)."""

    exit_code = 2


class WeightsError(DynastError):
    """A missing, corrupt or mismatching weights/checkpoint file."""

    exit_code = 3


class OutputError(DynastError):
    """The output cannot be written (exists without --overwrite, unwritable folder, unknown format)."""

    exit_code = 4


class BatchError(DynastError):
    """Some items of a batch failed; the others were written."""

    exit_code = 5
