"""What bundles there are and what each one says about itself (``medseg bundle ls`` and ``info``).

Adding bundles to the user folder (``install_bundle``, ``download_bundle``) lives in
``medseg.bundle.install`` and is re-exported here, so the catalog is one import.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from medseg.bundle.install import download_bundle, install_bundle
from medseg.bundle.locate import CONFIG_SUFFIXES, bundle_names, bundle_roots, find_bundle, read_metadata
from medseg.errors import BundleError
from medseg.typing import PathLike

__all__ = [
    "BundleInfo",
    "bundle_info",
    "describe_inputs",
    "download_bundle",
    "install_bundle",
    "licence_of",
    "list_bundles",
    "output_labels",
]


@dataclass(frozen=True)
class BundleInfo:
    """One line of ``medseg bundle ls``."""

    name: str
    version: str
    task: str
    inputs: str  # e.g. "1 x CT, 3D"
    labels: tuple[str, ...]
    licence: str
    location: Path
    origin: str  # "shipped" or "user"


def describe_inputs(inputs: dict) -> str:
    """``network_data_format.inputs`` in a few words: ``"1 x CT, 3D"``, several joined by ``; ``."""
    parts = []
    for spec in inputs.values():
        if not isinstance(spec, dict):
            continue
        text = f"{spec.get('num_channels', '?')} x {spec.get('modality') or spec.get('type') or '?'}"
        shape = spec.get("spatial_shape")
        parts.append(f"{text}, {len(shape)}D" if isinstance(shape, list) and shape else text)
    return "; ".join(parts)


def output_labels(outputs: dict) -> dict[int, str]:
    """Label id -> name from the ``channel_def`` of the first output that has one."""
    for spec in outputs.values():
        channel_def = spec.get("channel_def") if isinstance(spec, dict) else None
        if isinstance(channel_def, dict) and channel_def and all(str(k).isdigit() for k in channel_def):
            return {int(k): str(v) for k, v in sorted(channel_def.items(), key=lambda kv: int(kv[0]))}
    return {}


def licence_of(bundle: Path, metadata: dict) -> str:
    """The metadata's ``license``, else the first line of ``LICENSE`` (with its version line)."""
    declared = metadata.get("license") or metadata.get("licence")
    if declared:
        return str(declared).strip().splitlines()[0]
    try:
        with open(bundle / "LICENSE", encoding="utf-8", errors="replace") as f:
            lines = [line.strip() for line in f.read(4096).splitlines() if line.strip()]
    except OSError:
        return "unknown (no LICENSE)"
    if not lines:
        return "unknown (empty LICENSE)"
    if len(lines) > 1 and lines[1].lower().startswith("version"):  # "Apache License" / "Version 2.0, ..."
        return f"{lines[0]}, {lines[1].split(',')[0]}"
    return lines[0]


def _summary(bundle: Path, origin: str) -> BundleInfo:
    metadata = read_metadata(bundle)
    data_format = metadata.get("network_data_format") or {}
    return BundleInfo(
        name=bundle.name,
        version=str(metadata.get("version", "?")),
        task=str(metadata.get("task", "")),
        inputs=describe_inputs(data_format.get("inputs") or {}),
        labels=tuple(output_labels(data_format.get("outputs") or {}).values()),
        licence=licence_of(bundle, metadata),
        location=bundle,
        origin=origin,
    )


def _listed(bundle: Path, origin: str) -> BundleInfo:
    try:
        return _summary(bundle, origin)
    except BundleError:  # one broken bundle must not hide the others
        return BundleInfo(bundle.name, "?", "unreadable configs/metadata.json", "", (), "?", bundle, origin)


def list_bundles() -> list[BundleInfo]:
    """The shipped bundles, then those of the user folder, each sorted by name."""
    return [_listed(root / name, origin) for origin, root in bundle_roots() for name in bundle_names(root)]


def _origin(bundle: Path) -> str:
    for origin, root in bundle_roots():
        if root.is_dir() and bundle.is_relative_to(root.resolve()):
            return origin
    return "path"


def bundle_info(name_or_path: PathLike) -> dict:
    """What a bundle says about itself, where its configs are and whether its weights are there."""
    bundle = find_bundle(name_or_path)
    metadata = read_metadata(bundle)
    summary = _summary(bundle, _origin(bundle))
    configs = sorted(p for p in (bundle / "configs").iterdir() if p.suffix in CONFIG_SUFFIXES)
    models = bundle / "models"
    weights = {"models/model.pt": (models / "model.pt").is_file()}
    if models.is_dir():
        weights.update({f"models/{p.name}": True for p in sorted(models.iterdir()) if p.is_file()})
    keys = ("description", "authors", "copyright", "intended_use", "monai_version", "pytorch_version")
    return {
        "name": summary.name,
        "title": metadata.get("name", ""),
        "version": summary.version,
        "task": summary.task,
        **{key: metadata.get(key, "") for key in keys},
        "licence": summary.licence,
        "inputs": summary.inputs,
        "labels": output_labels((metadata.get("network_data_format") or {}).get("outputs") or {}),
        "required_packages": metadata.get("required_packages_version") or {},
        "references": metadata.get("references") or [],
        "origin": summary.origin,
        "location": str(bundle),
        "configs": {p.name: str(p) for p in configs},
        "weights": weights,
    }
