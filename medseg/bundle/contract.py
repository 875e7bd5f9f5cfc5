"""What medseg needs to know about a bundle, read from its ``metadata.json`` without running anything.

The model zoo's conventions (``network_data_format``): the first input names the image (channels,
spatial dims, modality, channel names); the first output names the labels through ``channel_def``.
Where ``channel_def`` is missing, labels are called ``label_1``, ``label_2``, ...
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from medseg.errors import BundleError
from medseg.typing import PathLike


@dataclass(frozen=True)
class BundleContract:
    """A bundle's inputs and outputs as its metadata declares them."""

    root: Path
    name: str
    version: str
    config_file: Path
    in_channels: int
    spatial_dims: int
    modality: str
    channel_names: tuple[str, ...]
    out_channels: int
    output_names: dict[int, str] = field(default_factory=dict)  # channel index -> name, as declared
    monai_version: str = ""  # the MONAI version the bundle was written for
    output_formats: tuple[str, ...] = ()  # each output's declared format ("segmentation", "classes", ...)

    @property
    def segments(self) -> bool:
        """Whether an output is a segmentation (the zoo writes "segmentation", or "labels")."""
        return any(f in ("segmentation", "labels") for f in self.output_formats)

    @property
    def background_first(self) -> bool:
        """A softmax-style output whose channel 0 is the background."""
        first = self.output_names.get(0, "").lower()
        return first in ("background", "bg", "_background_", "")

    def label_names(self) -> dict[int, str]:
        """Label value -> name of the semantic output (background left out)."""
        return {k: v for k, v in self.output_names.items() if k != 0 or not self.background_first}

    def region_names(self) -> dict[int, str]:
        """Region number (channel + 1) -> name, for sigmoid outputs with one channel per region."""
        return {k + 1: v for k, v in sorted(self.output_names.items())}


def inference_config(root: Path) -> Path:
    from medseg.bundle.locate import inference_config as find_config

    path = find_config(root)
    if path is None:
        raise BundleError(f"{root}: bundle has no configs/inference.json or .yaml")
    return path


def _channel_def(spec: dict, count: int, prefix: str) -> dict[int, str]:
    raw = spec.get("channel_def") or {}
    try:
        names = {int(k): str(v) for k, v in raw.items()}
    except (TypeError, ValueError):
        names = {}
    return names or {i: f"{prefix}_{i}" for i in range(count)}


def _slice_inferer(config_file: Path) -> bool:
    """A 2D network run slice by slice over a volume (MONAI's ``SliceInferer``) takes 3D input."""
    try:
        if config_file.suffix == ".json":
            config = json.loads(config_file.read_text())
        else:
            import yaml

            config = yaml.safe_load(config_file.read_text())
        return str(config.get("inferer", {}).get("_target_", "")).endswith("SliceInferer")
    except (OSError, ValueError, AttributeError, ImportError):
        return False  # an unreadable config is reported when the engine parses it


def read_contract(root: PathLike) -> BundleContract:
    """The contract of the bundle folder ``root`` (one line naming the problem if it has none)."""
    root = Path(root)
    from medseg.bundle.locate import read_metadata

    meta = read_metadata(root)
    fmt = meta.get("network_data_format") or {}
    inputs, outputs = fmt.get("inputs") or {}, fmt.get("outputs") or {}
    if not inputs or not outputs:
        raise BundleError(f"{root}: metadata.json has no network_data_format inputs/outputs")
    image = next(iter(inputs.values()))
    output = next(iter(outputs.values()))
    in_channels = int(image.get("num_channels", 1) or 1)
    out_channels = int(output.get("num_channels", 1) or 1)
    shape = image.get("spatial_shape") or [0, 0, 0]
    config_file = inference_config(root)
    spatial_dims = len(shape) if len(shape) in (2, 3) else 3
    if spatial_dims == 2 and _slice_inferer(config_file):
        spatial_dims = 3
    output_names = _channel_def(output, out_channels, "label")
    if output_names == {i: f"label_{i}" for i in range(out_channels)}:
        output_names = {0: "background", **{i: f"label_{i}" for i in range(1, out_channels)}}
    return BundleContract(
        root=root,
        name=root.name,
        version=str(meta.get("version", "0")),
        config_file=config_file,
        in_channels=in_channels,
        spatial_dims=spatial_dims,
        modality=str(image.get("modality", "")),
        channel_names=tuple(_channel_def(image, in_channels, "channel").values()),
        out_channels=out_channels,
        output_names=output_names,
        monai_version=str(meta.get("monai_version", "")),
        output_formats=tuple(str(o.get("format", "")) for o in outputs.values()),
    )
