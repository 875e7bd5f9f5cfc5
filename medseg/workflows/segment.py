"""Segment cases with any bundle: read once, run the bundle's engine, write every output on the
input's own grid (``medseg.workflows.outputs``), all files of a case at once or none."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from medseg.bundle.contract import read_contract
from medseg.bundle.parts import check_device, check_segments, read_checked
from medseg.errors import InputError
from medseg.io.atomic import atomic_folder
from medseg.io.case import CaseImage
from medseg.typing import PathLike
from medseg.workflows.bundles import find_bundle
from medseg.workflows.cases import Case, expand_inputs, image_stem
from medseg.workflows.outputs import DICOM_FORMATS, parse_formats, write_prediction

if TYPE_CHECKING:
    from medseg.io.dicom import DicomSeries


@dataclass
class SegmentResult:
    """What one case produced: the CLI prints this and nothing else decides."""

    case: str
    kind: str  # labels, regions or instances
    files: dict[str, Path]  # what -> final path
    stats: list[dict]  # table rows (labels, regions or instances)
    label: np.ndarray | None  # the label map (labels), merged regions, or instance ids
    affine: np.ndarray
    bundle: tuple[str, str, Path] = field(default=("", "", Path()))  # name, version, folder

    @property
    def label_path(self) -> Path | None:
        return self.files.get("label map (nifti)")


def format_bundle(name: str, version: str, folder: Path) -> str:
    """How the CLI names the bundle it ran: ``name version (folder)``."""
    return f"{name} {version} ({folder})"


def describe_bundle(bundle: PathLike) -> str:
    """``format_bundle`` of the bundle a name or path resolves to."""
    contract = read_contract(find_bundle(bundle))
    return format_bundle(contract.name, contract.version, contract.root)


def seg_source(image: Path, series: str | int | None, fmt: str) -> DicomSeries:
    """The DICOM series a SEG or RTSTRUCT will reference, checked before any work is done."""
    from medseg.io.dicom import find_series, select_series
    from medseg.io.dicom_seg import check_seg_source

    if not image.is_dir():
        raise InputError(f"{image}: --format {fmt} needs a DICOM folder as input (it references its source)")
    source = select_series(find_series(image), image, series)
    check_seg_source(source)
    return source


def _deidentifier(formats: Sequence[str], seed: str | None):
    """The anonymiser of the SEG/RTSTRUCT outputs (the only ones that hold patient data)."""
    if not any(f in DICOM_FORMATS for f in formats):
        raise InputError(
            "--anonymize is for DICOM outputs (--format seg or rtstruct); the others hold no patient data"
        )
    from medseg.io.deid import Deidentifier

    return Deidentifier(seed)


@dataclass
class Prepared:
    """A case read and preprocessed, ready for the network (made in a background thread)."""

    case: Case
    image: CaseImage
    source: DicomSeries | None  # the series a SEG / RTSTRUCT will reference
    item: dict  # the bundle's preprocessing output


class Segmenter:
    """A bundle found, checked and (on first use) loaded once, then applied case after case."""

    def __init__(
        self,
        bundle: PathLike = "abdomen_ct_segmentation",
        device: str | None = None,
        progress: bool = True,
        formats: str | Sequence[str] = ("auto",),
        overrides: dict | None = None,
        anonymize: bool = False,
        seed: str | None = None,
    ) -> None:
        self.formats = parse_formats(formats)
        self.deidentify = _deidentifier(self.formats, seed) if anonymize else None
        self.device = check_device(device)
        self.contract = read_contract(find_bundle(bundle))
        check_segments(self.contract)
        self.progress, self.overrides = progress, overrides
        self.engine = None
        self._lock = threading.Lock()

    @property
    def bundle(self) -> tuple[str, str, Path]:
        return self.contract.name, self.contract.version, self.contract.root

    def _load(self):
        """Parse the bundle on first use, so that a bad input fails before MONAI loads."""
        with self._lock:
            if self.engine is None:
                from medseg.bundle.engine import BundleEngine

                self.engine = BundleEngine(self.contract, self.device, self.overrides, self.progress)
            return self.engine

    def close(self) -> None:
        self.engine = None

    def prepare(self, case: Case) -> Prepared:
        """Check and read one case, and run the bundle's preprocessing on it."""
        dicom = [f for f in self.formats if f in DICOM_FORMATS]
        source = seg_source(case.image, case.series, dicom[0]) if dicom else None
        image = read_checked(case.images, case.series, self.contract)
        return Prepared(case, image, source, self._load().preprocess(image))

    def run(self, prepared: Prepared, out_dir: PathLike) -> SegmentResult:
        """Segment a prepared case into the folder ``out_dir/<case name>/``, which appears whole
        (replacing a previous output of the case) or not at all."""
        image = prepared.image
        pred = self._load().predict(prepared.item, image)
        modality = image.modality or self.contract.modality
        case_dir = Path(out_dir) / prepared.case.name
        with atomic_folder(case_dir) as tmp:
            files, rows = write_prediction(
                pred, image, tmp, prepared.case.name, self.formats, modality, prepared.source,
                algorithm=(self.contract.name, self.contract.version), deidentify=self.deidentify,
            )  # fmt: skip
        files = {what: case_dir / path.name for what, path in files.items()}
        label = pred.instances if pred.kind == "instances" else pred.labels
        return SegmentResult(
            prepared.case.name, pred.kind, files, rows, label, image.geometry.affine, self.bundle
        )


def segment(
    image: PathLike | Sequence[PathLike],
    bundle: PathLike = "abdomen_ct_segmentation",
    out_dir: PathLike = "outputs/segment",
    device: str | None = None,
    progress: bool = True,
    series: str | int | None = None,
    formats: str | Sequence[str] = ("auto",),
    overrides: dict | None = None,
    name: str | None = None,
    anonymize: bool = False,
    seed: str | None = None,
) -> SegmentResult:
    """Run the bundle on one case into ``out_dir/<name>/``.

    ``image`` is a file (NIfTI, NRRD, MetaImage, TIFF, PNG/JPEG), a DICOM folder, or a list of files,
    one per channel. ``series`` chooses one series of a folder that holds several (index or UID, as
    `medseg dicom ls` shows them); ``formats``: see ``medseg.workflows.outputs``. ``name``: the
    output file stem (default: the file's or DICOM folder's name, unless it holds a patient
    identifier: see ``medseg.privacy.case_name``). ``anonymize``: the SEG/RTSTRUCT outputs are
    de-identified (``medseg.io.deid``; the same ``seed`` as `medseg dicom anonymize` keeps them
    referencing the anonymised series). Everything is
    written into a staging folder first, which becomes ``out_dir/<name>/`` in one rename only when
    the whole case succeeded. Many cases: ``medseg.workflows.batch.segment_many``.
    """
    images = [Path(image)] if isinstance(image, str | Path) else [Path(p) for p in image]
    if name is None and len(images) == 1 and images[0].is_dir():
        name = expand_inputs(images, series=series)[0].name  # a DICOM folder named by its case rules
    case = Case(name or image_stem(images[0]), images[0], series, tuple(images[1:]))
    segmenter = Segmenter(bundle, device, progress, formats, overrides, anonymize, seed)
    try:
        return segmenter.run(segmenter.prepare(case), out_dir)
    finally:
        segmenter.close()
