"""Segment many cases with one loaded bundle: the next case is read while this one is computed,
cases already done are skipped with ``resume``, one bad case does not stop the others, and a
summary (cases, seconds each, failures with their one-line reason) is rewritten as each case ends."""

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
from medseg.io.atomic import MARKER, atomic_path
from medseg.privacy import scrub
from medseg.typing import PathLike
from medseg.workflows.cases import Case
from medseg.workflows.outputs import parse_formats
from medseg.workflows.segment import Segmenter


@dataclass
class CaseResult:
    case: str
    image: str
    status: str  # done, skipped (already done), failed, pending (not yet run)
    seconds: float
    reason: str = ""

    def __post_init__(self) -> None:
        # Printed and written to the summary: no patient identifier read from DICOM in either.
        self.image, self.reason = scrub(self.image), scrub(self.reason)


def is_done(case: Case, out_dir: Path) -> bool:
    """The case's output folder is there: it appears only whole (``medseg.io.atomic``)."""
    return (out_dir / case.name / MARKER).is_file()


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
    anonymize: bool = False,
    seed: str | None = None,
) -> list[CaseResult]:
    """Segment ``cases`` into ``out_dir``; returns one result per case (also written as
    ``summary.csv`` and ``summary.json`` in ``out_dir``)."""
    out_dir, formats = Path(out_dir), parse_formats(formats)
    todo = [c for c in cases if not (resume and is_done(c, out_dir))]
    results = {
        c.name: CaseResult(c.name, str(c.image), "pending" if c in todo else "skipped", 0.0) for c in cases
    }
    write_summary(list(results.values()), out_dir)  # rewritten as each case ends: a kill loses none
    segmenter = Segmenter(bundle, device, False, formats, overrides, anonymize, seed)
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
            write_summary(list(results.values()), out_dir)
            if on_case:
                on_case(result)
            if bar:
                bar.update(1)
    if bar:
        bar.close()
    segmenter.close()
    return list(results.values())


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
