"""Atomic file output: a failed or interrupted write never leaves a partial or half-replaced file."""

from __future__ import annotations

import glob
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_output(path: str | Path, suffix: str = ".part") -> Iterator[Path]:
    """Yield a temporary path in ``path``'s folder; on success it replaces ``path``, else it is removed.

    ``suffix`` ends the temporary name (writers that pick a format from the extension need it,
    e.g. ``".part.mp4"``). The result gets the usual permissions (0666 minus the umask), not
    ``mkstemp``'s private 0600.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def leftovers(path: str | Path) -> list[Path]:
    """The temporaries :func:`atomic_output` left for ``path`` when its process was killed (``-9``, a lost
    node) before it could remove them: hidden ``.<name>.<random><suffix>`` files beside it."""
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    try:
        return sorted(p for p in folder.glob(f".{glob.escape(path.name)}.*.part*") if p.is_file())
    except OSError:
        return []


def remove_leftovers(path: str | Path) -> None:
    """Remove :func:`leftovers` of ``path`` (a resumed run, before it writes ``path`` or keeps it)."""
    for tmp in leftovers(path):
        tmp.unlink(missing_ok=True)

