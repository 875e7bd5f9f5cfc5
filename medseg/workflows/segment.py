"""Segment one scan with a bundle: label map (NIfTI, DICOM SEG, RTSTRUCT) on the input grid,
volume table, overlay PNG."""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medseg.errors import InputError, MedsegError
from medseg.inference.stats import label_stats, write_table
from medseg.io import atomic_dir, read_image
from medseg.io.dicom import DicomSeries, find_series, select_series
from medseg.io.dicom_rtstruct import write_rtstruct
from medseg.io.dicom_seg import check_seg_source, write_seg
from medseg.io.geometry import Geometry
from medseg.io.overlay import save_overlay
from medseg.typing import PathLike
from medseg.workflows.bundles import bundle_labels, bundle_metadata, find_bundle, load_bundle
from medseg.workflows.cases import Case, image_stem

FORMATS = ("nifti", "seg", "rtstruct")

log = logging.getLogger(__name__)


@dataclass
class SegmentResult:
    label_path: Path | None  # NIfTI label map, if asked for
    seg_path: Path | None  # DICOM SEG, if asked for and any label was found
    rtstruct_path: Path | None  # DICOM RTSTRUCT, likewise
    stats_csv: Path
    stats_json: Path
    overlay_png: Path
    label: np.ndarray
    affine: np.ndarray
    stats: list[dict]


def check_volume(path: PathLike, array: np.ndarray, spatial_dims: int = 3) -> None:
    """A 3D bundle needs a 3D volume with more than one slice along every axis."""
    shape = array.shape
    if array.ndim < spatial_dims or sum(s > 1 for s in shape[:3]) < spatial_dims:
        raise InputError(f"{path}: image of shape {shape} is not a 3D volume; this bundle segments 3D scans")


def parse_formats(formats: str | Sequence[str]) -> tuple[str, ...]:
    names = formats.split(",") if isinstance(formats, str) else list(formats)
    names = [n.strip().lower() for n in names if n.strip()]
    unknown = [n for n in names if n not in FORMATS]
    if unknown or not names:
        raise InputError(
            f"unknown output format {', '.join(unknown) or '(none)'}; choose from {', '.join(FORMATS)}"
        )
    return tuple(dict.fromkeys(names))


def seg_source(image: Path, series: str | int | None, fmt: str) -> DicomSeries:
    """The DICOM series a SEG or RTSTRUCT will reference, checked before any work is done."""
    if not image.is_dir():
        raise InputError(f"{image}: --format {fmt} needs a DICOM folder as input (it references its source)")
    source = select_series(find_series(image), image, series)
    check_seg_source(source)
    return source


def _root_medseg_error(err: BaseException) -> MedsegError | None:
    """MONAI wraps errors raised inside transforms; find ours in the chain of causes."""
    seen = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, MedsegError):
            return err
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return None


@dataclass
class Prepared:
    """A case read and preprocessed, ready for the network (made in a background thread)."""

    case: Case
    array: np.ndarray  # the image on its own grid, for checks, statistics and the overlay
    geometry: Geometry
    source: DicomSeries | None  # the series a SEG / RTSTRUCT will reference
    item: dict  # the bundle's preprocessing output


class Segmenter:
    """A bundle's inference config, parsed and loaded once, applied case after case.

    The bundle's own ``preprocessing``, ``evaluator`` (network, inferer, postprocessing,
    checkpoint) are used unchanged; only the data loader is replaced by one prepared case, so
    that the next case can be read while this one is computed.
    """

    def __init__(
        self,
        bundle: PathLike = "abdomen_ct_segmentation",
        device: str | None = None,
        progress: bool = True,
        formats: str | Sequence[str] = ("nifti",),
    ) -> None:
        self.formats = parse_formats(formats)
        self.bundle_dir = find_bundle(bundle)
        self.names = bundle_labels(self.bundle_dir)
        self.version = str(bundle_metadata(self.bundle_dir).get("version", "0"))
        self.device, self.progress = device, progress
        self.staging = Path(tempfile.mkdtemp(prefix="medseg-segment-"))
        self.workflow = self.preprocessing = self.evaluator = None

    def _load(self) -> None:
        """Parse the bundle on first use, so that a bad input fails before MONAI loads."""
        if self.workflow is not None:
            return
        overrides = {"output_dir": str(self.staging), "inferer#progress": self.progress}
        if self.device:
            overrides["device"] = f"$torch.device('{self.device}')"
        self.workflow = load_bundle(self.bundle_dir, ["inference"], overrides, workflow_type="infer")
        self.preprocessing = self.workflow.parser.get_parsed_content("preprocessing")
        self.evaluator = self.workflow.parser.get_parsed_content("evaluator")

    def close(self) -> None:
        if self.workflow is not None:
            self.workflow.finalize()
        shutil.rmtree(self.staging, ignore_errors=True)

    def prepare(self, case: Case) -> Prepared:
        """Check and read one case, and run the bundle's preprocessing on it."""
        dicom_formats = [f for f in self.formats if f in ("seg", "rtstruct")]
        source = seg_source(case.image, case.series, dicom_formats[0]) if dicom_formats else None
        array, geometry = read_image(case.image, case.series)
        check_volume(case.image, array)
        self._load()
        for reader in _medseg_readers(self.preprocessing):
            reader.series = case.series
        try:
            item = self.preprocessing({"image": str(case.image)})
        except Exception as err:
            raise _root_medseg_error(err) or err from None
        return Prepared(case, array, geometry, source, item)

    def run(self, prepared: Prepared, out_dir: PathLike) -> SegmentResult:
        """Segment a prepared case into ``out_dir`` (all its files appear at once, or none)."""
        stem, array, geometry = prepared.case.name, prepared.array, prepared.geometry
        with atomic_dir(out_dir) as tmp:
            written = tmp / f"{stem}_seg.nii.gz"
            self._infer(prepared.item, written)
            label, label_geometry = read_image(written)
            same_grid = np.allclose(label_geometry.affine, geometry.affine, atol=1e-4)
            if label.shape != array.shape or not same_grid:
                raise MedsegError(f"{written}: label map is not on the input grid (bug: please report)")
            stats = label_stats(label, geometry.affine, self.names, image=array)
            write_table(stats, tmp / f"{stem}_volumes.csv", tmp / f"{stem}_volumes.json")
            save_overlay(tmp / f"{stem}_overlay.png", array, label, geometry.affine, self.names)
            dicom_out = {}
            for fmt, writer in (("seg", write_seg), ("rtstruct", write_rtstruct)):
                if fmt in self.formats:
                    dicom_out[fmt] = writer(
                        label,
                        geometry,
                        prepared.source,
                        self.names,
                        tmp / f"{stem}_{fmt}.dcm",
                        algorithm_name=self.bundle_dir.name,
                        algorithm_version=self.version,
                    )
            if "nifti" not in self.formats:
                written.unlink()
        out_dir = Path(out_dir)
        return SegmentResult(
            label_path=out_dir / written.name if "nifti" in self.formats else None,
            seg_path=out_dir / dicom_out["seg"].name if dicom_out.get("seg") else None,
            rtstruct_path=out_dir / dicom_out["rtstruct"].name if dicom_out.get("rtstruct") else None,
            stats_csv=out_dir / f"{stem}_volumes.csv",
            stats_json=out_dir / f"{stem}_volumes.json",
            overlay_png=out_dir / f"{stem}_overlay.png",
            label=label,
            affine=geometry.affine,
            stats=stats,
        )

    def _infer(self, item: dict, label_path: Path) -> None:
        """Run the bundle's evaluator on one case; its SaveImaged writes into the staging folder."""
        from monai.data import list_data_collate

        for old in self.staging.iterdir():
            old.unlink()
        self.evaluator.data_loader = [list_data_collate([item])]
        self.evaluator.state.max_epochs = None  # a fresh run each case, also after a failed one
        try:
            self.evaluator.run()
        except Exception as err:
            raise _root_medseg_error(err) or err from None
        saved = sorted(self.staging.glob("*.nii*"))
        if len(saved) != 1:
            raise MedsegError(f"{self.bundle_dir.name}: the bundle saved {len(saved)} label maps, expected 1")
        shutil.move(saved[0], label_path)


def _medseg_readers(preprocessing) -> list:
    """The MedsegReader instances of the bundle's LoadImaged, whose series is set per case."""
    from medseg.io.monai_reader import MedsegReader

    readers = []
    for transform in getattr(preprocessing, "transforms", []):
        loader = getattr(transform, "_loader", None)
        readers += [r for r in getattr(loader, "readers", []) if isinstance(r, MedsegReader)]
    return readers


def segment(
    image: PathLike,
    bundle: PathLike = "abdomen_ct_segmentation",
    out_dir: PathLike = "outputs/segment",
    device: str | None = None,
    progress: bool = True,
    series: str | int | None = None,
    formats: str | Sequence[str] = ("nifti",),
) -> SegmentResult:
    """Run the bundle's inference config on ``image`` (NIfTI file or DICOM folder) into ``out_dir``.

    ``series`` chooses one series of a folder that holds several (index or UID, as `medseg
    dicom ls` shows them); ``formats`` is any of ``nifti``, ``seg`` (DICOM SEG referencing the
    source series) and ``rtstruct`` (RT structure set, likewise). Everything is written into a
    temporary folder first and moved into ``out_dir`` only when the whole case succeeded, so a
    failure leaves no partial output. Many cases: ``medseg.workflows.batch.segment_many``.
    """
    image = Path(image)
    case = Case(image_stem(image), image, series)
    segmenter = Segmenter(bundle, device, progress, formats)
    try:
        return segmenter.run(segmenter.prepare(case), out_dir)
    finally:
        segmenter.close()
