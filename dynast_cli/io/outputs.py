"""Output checks done before any work: a command that cannot write its results fails at once (exit 4).

:func:`check_output` is the one check every writing command runs on each output before it loads a
model or reads a frame: an existing result without ``--overwrite``, a folder in the way of a file (or
a file in the way of a folder), a parent folder that is a file, cannot be created or is not writable
all raise :class:`~dynast_cli.errors.OutputError` with a one-line message naming the path.

Writability is probed by creating (and removing) a temporary file in the folder, or, for a folder
still to be created, in its nearest existing ancestor: permission bits alone say nothing for root,
ACLs or read-only mounts. Nothing is created by the check itself.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Iterable

from dynast_cli.errors import OutputError
from dynast_cli.io.atomic import atomic_output

EXISTS = "already exists (pass --overwrite to replace it)"


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except OSError as exc:  # e.g. a parent that cannot be searched
        raise OutputError(f"cannot be accessed ({exc.strerror or exc})", path) from None


def _probe(folder: Path) -> str | None:
    """Create and remove a temporary file in ``folder``; the reason when that fails, else None."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=".dynast-write-check.", dir=folder)
    except OSError as exc:
        return exc.strerror or str(exc)
    os.close(fd)
    os.unlink(tmp)
    return None


def check_folder(folder: str | Path, create: bool = True) -> Path:
    """Check that files can be written into ``folder``: it is a writable folder, or (``create``) it
    can be created (its nearest existing ancestor is a writable folder). Returns ``folder``."""
    folder = Path(folder) if str(folder) else Path(".")
    if _exists(folder):
        if not folder.is_dir():
            raise OutputError("is a file, not a folder", folder)
        reason = _probe(folder)
        if reason:
            raise OutputError(f"folder is not writable ({reason})", folder)
        return folder
    if not create:
        raise OutputError("folder does not exist", folder)
    for ancestor in folder.parents:
        if _exists(ancestor):
            if not ancestor.is_dir():
                raise OutputError(f"is a file, not a folder (cannot create {folder})", ancestor)
            reason = _probe(ancestor)
            if reason:
                raise OutputError(f"folder cannot be created ({ancestor} is not writable: {reason})", folder)
            return folder
    return folder  # unreachable in practice: the root or the working folder exists


def check_output(
    path: str | Path,
    overwrite: bool = False,
    kind: str = "file",
    files: Iterable[str] = (),
    create: bool = True,
) -> Path:
    """Check an output before any work; returns ``path``.

    ``kind="file"``: ``path`` is a file to write; it must not exist unless ``overwrite``, must not
    be a folder, and its folder must be writable (or creatable, when ``create``).
    ``kind="dir"``: ``path`` is a folder to write ``files`` (names) into; an existing folder is fine,
    but each of ``files`` in it must not exist unless ``overwrite`` (nor be a folder).
    """
    path = Path(path)
    if kind == "file":
        if path.is_dir():
            raise OutputError("is a folder (expected a file name)", path)
        if _exists(path) and not overwrite:
            raise OutputError(EXISTS, path)
        check_folder(path.parent, create=create)
        return path
    if kind != "dir":
        raise ValueError(f"kind must be 'file' or 'dir', got {kind!r}")
    check_folder(path, create=create)
    for name in files:
        target = path / name
        if target.is_dir():
            raise OutputError("is a folder (expected a file name)", target)
        if _exists(target) and not overwrite:
            raise OutputError(EXISTS, target)
    return path


def write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically; an OSError becomes an OutputError naming the file."""
    path = Path(path)
    try:
        with atomic_output(path, suffix=".part") as tmp:
            tmp.write_text(text)
    except OSError as exc:
        raise OutputError(f"cannot write ({exc.strerror or exc})", path) from None
    return path


def save_figure(fig: Any, path: str | Path, **kwargs: Any) -> Path:
    """``fig.savefig`` atomically (the temporary name keeps the extension, which picks the format)."""
    path = Path(path)
    try:
        with atomic_output(path, suffix=f".part{path.suffix}") as tmp:
            fig.savefig(tmp, **kwargs)
    except OSError as exc:
        raise OutputError(f"cannot write ({exc.strerror or exc})", path) from None
    return path


def _same_file_key(path: Path) -> str:
    """``path`` with symlinks and ``..`` resolved (also for a file that does not exist yet), for comparisons."""
    return os.path.normcase(os.path.realpath(path))


def _file_id(path: Path) -> tuple[int, int] | None:
    """(device, inode) of an existing ``path`` (one file whatever its name: a hard link, another case on a
    case-insensitive disk), else None."""
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_dev, st.st_ino


def check_distinct(outputs: Iterable[tuple[str | Path, str]], inputs: Iterable[str | Path] = ()) -> None:
    """Before any work: no output is one of the run's ``inputs`` (writing it would replace the source,
    even with ``--overwrite``) and no two outputs are one file (one would silently replace the other).
    ``outputs``: (path, what writes it, e.g. ``"--save-edges"`` or the content file it is made from).
    Raises :class:`~dynast_cli.errors.OutputError` naming the path. One stat per path (a folder of many
    contents is checked in linear time)."""
    sources: dict[object, Path] = {}
    for p in map(Path, inputs):
        sources[_same_file_key(p)] = p
        if (file_id := _file_id(p)) is not None:
            sources[file_id] = p
    seen: dict[str, str] = {}
    for path, what in outputs:
        key = _same_file_key(Path(path))
        source = sources.get(key) or sources.get(_file_id(Path(path)))
        if source is not None:
            same = "" if Path(path) == source else f" ({source})"
            raise OutputError(f"is an input of this run{same}: writing it would replace the source", path)
        if key in seen:
            raise OutputError(f"would be written twice, for {seen[key]} and for {what} (rename one of them)", path)
        seen[key] = what
