"""What a batch job did, shared by the pipelines that go on past a bad file (style folders and shards, pose
sequences): the files written, skipped and failed, and the one exit-5 error that names every failure."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from dynast_cli.errors import BatchError


@dataclass
class BatchReport:
    """What a batch did: files ``written``, ``skipped`` (``--resume``: already complete) and ``failed``
    (``(content, one-line reason)``). ``shard``: ``"i/n"`` for one share of a job (``None``: the whole
    job, or a merged report); ``planned``: how many files it was given; ``error``: the one-line error
    that stopped it as a whole (a merged report lists those of its shards in ``errors``)."""

    written: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    shard: str | None = None
    planned: int = 0
    errors: list[str] = field(default_factory=list)

    def counts(self) -> str:
        """``"3 written, 1 skipped, 0 failed"``."""
        return f"{len(self.written)} written, {len(self.skipped)} skipped, {len(self.failed)} failed"

    def to_json(self) -> dict:
        return {"shard": self.shard, "planned": self.planned, "written": [str(p) for p in self.written],
                "skipped": [str(p) for p in self.skipped],
                "failed": [{"file": str(f), "error": e} for f, e in self.failed], "errors": list(self.errors)}

    @classmethod
    def from_json(cls, data: dict) -> "BatchReport":
        return cls([Path(p) for p in data["written"]], [(Path(f["file"]), f["error"]) for f in data["failed"]],
                   [Path(p) for p in data["skipped"]], data.get("shard"), int(data.get("planned", 0)),
                   list(data.get("errors", [])))

    @classmethod
    def merge(cls, reports: Sequence["BatchReport"]) -> "BatchReport":
        """One report of several shards' (the files in the shards' order)."""
        merged = cls()
        for report in reports:
            merged.written += report.written
            merged.skipped += report.skipped
            merged.failed += report.failed
            merged.planned += report.planned
            merged.errors += [f"shard {report.shard}: {e}" if report.shard else e for e in report.errors]
        return merged


def batch_error(report: BatchReport) -> BatchError:
    """The exit-5 error of a batch whose files failed (or, merged, some of whose shards stopped): one line
    naming each failure."""
    parts = [f"{len(report.failed)} of {report.planned} file(s) failed: " + "; ".join(msg for _, msg in report.failed)]
    if not report.failed:
        parts = []
    parts += report.errors
    error = BatchError("; ".join(parts))
    error.report = report
    return error
