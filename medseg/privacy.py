"""Keep patient identifiers out of what medseg prints, logs, summarises and names.

DICOM headers carry the patient's name, IDs, birth date and accession number, and exports often
repeat them in free text (a SeriesDescription "Doe Jane 12345 T1") and in folder names. Every
header medseg reads is ``remember``-ed here (``medseg.io.dicom`` does it as it parses), and
``scrub`` removes what was remembered from any text before it is shown or written: the CLI routes
all of its output through ``scrubbed_output``, summaries scrub their text columns, and
``case_name`` keeps identifiers out of output file names. The registry lives for the process, so
an identifier one case revealed is also removed from the messages of the next.

Example::

    remember(ds)  # ds.PatientName == "Doe^Jane", ds.PatientID == "PID-12345"
    scrub("Doe_Jane/slice7.dcm: PID-12345 T1")  # -> "[redacted]_[redacted]/slice7.dcm: [redacted] T1"

SEG and RTSTRUCT objects are not scrubbed: the standard has them copy the patient module of their
source (``medseg.io.deid`` anonymises them on request).
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import sys
import threading
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, TextIO

REDACTED = "[redacted]"
# Shorter tokens (initials, a two-letter name) would erase ordinary words from every message.
MIN_LENGTH = 3
# Parts of an ID long enough to be recognised alone ("123456" of "PID-123456").
MIN_ID_PART = 4
NAME_KEYWORDS = ("PatientName", "OtherPatientNames", "PatientBirthName")
ID_KEYWORDS = ("PatientID", "OtherPatientIDs", "AccessionNumber")
DATE_KEYWORDS = ("PatientBirthDate",)

_lock = threading.Lock()  # cases are read in a background thread while another is computed
_known: set[str] = set()
_pattern: re.Pattern | None = None


def _values(ds: Any, keyword: str) -> list[str]:
    """The non-empty string values of one element (multi-valued elements give several)."""
    value = ds.get(keyword, None)
    if value is None:
        return []
    items = value if isinstance(value, Sequence) and not isinstance(value, str) else [value]
    return [str(v).strip() for v in items if str(v).strip()]


def name_tokens(name: str) -> set[str]:
    """The words of a DICOM person name (``Doe^Jane``, ``van Dijk^Anna``), and the family and given
    names run together (``DoeJane``, ``JaneDoe``), as they appear in folder names."""
    groups = name.split("=")[0].split("^")  # alphabetic group; components: family^given^middle^...
    words = {w for g in groups[:3] for w in re.split(r"[\s,.\-]+", g) if len(w) >= MIN_LENGTH}
    family, given = (re.sub(r"[\s\-]+", "", g) for g in (groups + [""])[:2])
    if family and given:
        words |= {family + given, given + family}
    return words


def id_tokens(value: str) -> set[str]:
    """An ID as written and its alphanumeric parts that hold a digit (``PID-123456`` -> ``123456``)."""
    parts = {p for p in re.findall(r"[^\W_]+", value) if len(p) >= MIN_ID_PART and re.search(r"\d", p)}
    return ({value} if len(value) >= MIN_LENGTH else set()) | parts


def date_tokens(value: str) -> set[str]:
    """A DICOM date (``YYYYMMDD``) in the renderings people type: ISO, European and US."""
    match = re.fullmatch(r"(\d{4})(\d{2})(\d{2})", value.strip())
    if not match:
        return {value} if len(value) >= MIN_LENGTH else set()
    y, m, d = match.groups()
    return {y + m + d, f"{y}-{m}-{d}", f"{y}/{m}/{d}", f"{y}.{m}.{d}"} | {
        f"{a}{sep}{b}{sep}{y}" for a, b in ((d, m), (m, d)) for sep in "./-"
    }


def identifiers(ds: Any) -> set[str]:
    """The patient identifiers of one DICOM header: name words, IDs, accession, birth date."""
    found: set[str] = set()
    for keyword in NAME_KEYWORDS:
        for value in _values(ds, keyword):
            found |= name_tokens(value)
    for keyword in ID_KEYWORDS:
        for value in _values(ds, keyword):
            found |= id_tokens(value)
    for keyword in DATE_KEYWORDS:
        for value in _values(ds, keyword):
            found |= date_tokens(value)
    return found


def remember(ds: Any) -> Any:
    """Add the patient identifiers of a header just read to the ones ``scrub`` removes; returns
    ``ds``, so that a reader can remember what it returns."""
    found = identifiers(ds)
    global _pattern
    with _lock:
        if not found <= _known:
            _known.update(found)
            _pattern = None
    return ds


def forget_all() -> None:
    """Empty the registry (tests; a long-lived process that moves on to other patients' data)."""
    global _pattern
    with _lock:
        _known.clear()
        _pattern = None


def _token_pattern(token: str) -> str:
    """``token`` where it is not part of a longer word or number: "Doe" in "Doe_Jane" and "Doe2"
    but not in "Does"; "12345" in "CT12345" but not in "123456"."""
    before = r"(?<![^\W\d_])" if token[0].isalpha() else r"(?<!\d)" if token[0].isdigit() else ""
    after = r"(?![^\W\d_])" if token[-1].isalpha() else r"(?!\d)" if token[-1].isdigit() else ""
    return before + re.escape(token) + after


def compile_pattern(tokens: Iterable[str]) -> re.Pattern | None:
    """One case-insensitive pattern for all tokens, longest first so a full ID wins over its parts."""
    ordered = sorted(set(tokens), key=lambda t: (-len(t), t))
    return re.compile("|".join(map(_token_pattern, ordered)), re.IGNORECASE) if ordered else None


def scrub(text: object, pattern: re.Pattern | None = None) -> str:
    """``text`` with every remembered identifier (or those of ``pattern``) replaced by ``[redacted]``."""
    global _pattern
    text = str(text)
    if pattern is None:
        with _lock:
            if _pattern is None and _known:
                _pattern = compile_pattern(_known)
            pattern = _pattern
    return pattern.sub(REDACTED, text) if pattern is not None else text


def case_name(name: str, key: str) -> str:
    """``name`` (a folder's name) as an output file stem, or ``case-<8 hex>`` when it holds a
    remembered identifier. The hash is of ``key`` (what the input is: its resolved path, series),
    so the name is the same on every run (``--resume`` finds the outputs) and says nothing about
    the patient."""
    if scrub(name) == name:
        return name
    return "case-" + hashlib.sha256(key.encode()).hexdigest()[:8]


class _ScrubbedStream:
    """A text stream that scrubs what is written to it (everything else goes to the stream)."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        self._stream.write(scrub(text))
        return len(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


@contextlib.contextmanager
def scrubbed_output() -> Iterator[None]:
    """Scrub everything written to stdout and stderr in the block: prints, log records, warnings,
    progress bars, the one-line error. One choke point, so no message can forget to scrub."""
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = _ScrubbedStream(sys.stdout), _ScrubbedStream(sys.stderr)
    try:
        yield
    finally:
        sys.stdout, sys.stderr = saved
