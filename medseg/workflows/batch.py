"""Segment many cases with one loaded bundle: the next case is read while this one is computed,
cases already done are skipped with ``resume``, one bad case does not stop the others, and a
summary (cases, seconds each, failures with their one-line reason) ends the run."""

from __future__ import annotations

import csv
import io
import json
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

from medseg.errors import MedsegError
from medseg.io.atomic import atomic_path
from medseg.typing import PathLike
from medseg.workflows.cases import Case
from medseg.workflows.outputs import parse_formats
from medseg.workflows.segment import Segmenter


@dataclass
class CaseResult:
    case: str
    image: str
    status: str  # done, skipped (already done), failed
    seconds: float
    reason: str = ""


def is_done(case: Case, out_dir: Path) -> bool:
    """The case's overlay and table are there: every kind writes both (SEG/RTSTRUCT may rightly be
    absent; the table is ``_volumes`` for labels and regions, ``_instances`` for instances)."""
    tables = (out_dir / f"{case.name}_volumes.json", out_dir / f"{case.name}_instances.json")
    return (out_dir / f"{case.name}_overlay.png").exists() and any(p.exists() for p in tables)


def one_line(err: BaseException) -> str:
    """The reason a case failed, in one line; medseg's own errors already name the file."""
    text = " ".join(str(err).split()) or type(err).__name__
    return text if isinstance(err, MedsegError) else f"{type(err).__name__}: {text} (please report)"


def segment_many(
    cases: list[Case],
    bundle: PathLike = "abdomen_ct_segmentation",
    out_dir: PathLike = "outputs/segment",
    device: str | None = None,
    formats: str | Sequence[str] = ("auto",),
    resume: bool = False,
    progress: bool = True,
    on_case: Callable[[CaseResult], None] | None = None,
    overrides: dict | None = None,
) -> list[CaseResult]:
    """Segment ``cases`` into ``out_dir``; returns one result per case (also written as
    ``summary.csv`` and ``summary.json`` in ``out_dir``)."""
    out_dir, formats = Path(out_dir), parse_formats(formats)
    todo = [c for c in cases if not (resume and is_done(c, out_dir))]
    results = {c.name: CaseResult(c.name, str(c.image), "skipped", 0.0) for c in cases if c not in todo}
    segmenter = Segmenter(bundle, device, progress=False, formats=formats, overrides=overrides)
    bar = _progress(len(todo), progress)
    with ThreadPoolExecutor(max_workers=1) as reader:  # reads case i + 1 while case i is computed
        ahead: Future | None = reader.submit(segmenter.prepare, todo[0]) if todo else None
        for i, case in enumerate(todo):
            start, current = time.perf_counter(), ahead
            ahead = reader.submit(segmenter.prepare, todo[i + 1]) if i + 1 < len(todo) else None
            try:
                segmenter.run(current.result(), out_dir)
                result = CaseResult(case.name, str(case.image), "done", 0.0)
            except Exception as err:  # one bad case does not stop the others
                result = CaseResult(case.name, str(case.image), "failed", 0.0, one_line(err))
            result.seconds = round(time.perf_counter() - start, 2)
            results[case.name] = result
            if on_case:
                on_case(result)
            if bar:
                bar.update(1)
    if bar:
        bar.close()
    segmenter.close()
    ordered = [results[c.name] for c in cases]
    write_summary(ordered, out_dir)
    return ordered


def _progress(total: int, enabled: bool):
    if not enabled or total == 0:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc="cases", unit="case")


def write_summary(results: list[CaseResult], out_dir: Path) -> None:
    rows = [asdict(r) for r in results]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(CaseResult.__dataclass_fields__), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(out_dir / "summary.csv") as tmp:
        tmp.write_text(buffer.getvalue())
    with atomic_path(out_dir / "summary.json") as tmp:
        tmp.write_text(json.dumps(rows, indent=2) + "\n")
