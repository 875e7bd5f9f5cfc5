"""The parts of a bundle that inference needs, parsed and loaded, and the checks of a case against it.

Only what inference needs is parsed from the bundle's inference config: ``network`` (or
``network_def``), ``preprocessing``, ``inferer`` and ``postprocessing``, and the path and key of its
``CheckpointLoader``. Its datalist, dataset, data loader, evaluator and handlers are never evaluated
(some read files at parse time, or point at ``/workspace/data``). ``medseg.bundle.engine`` runs them.
"""

from __future__ import annotations

import contextlib
import re
import sys
from pathlib import Path
from typing import Any

from medseg.bundle.contract import BundleContract
from medseg.errors import BundleError, InputError
from medseg.io.case import CaseImage, read_case
from medseg.transforms.finite import check_finite
from medseg.typing import PathLike

DEVICE_PATTERN = re.compile(r"^(cpu|cuda(:\d+)?|mps)$")
CHECKPOINT_LOADERS = ("CheckpointLoader",)


def check_device(device: str | None) -> str | None:
    """``cpu``, ``cuda``, ``cuda:N`` or ``mps``; anything else is refused (never pasted into a config)."""
    if device is None or DEVICE_PATTERN.match(device):
        return device
    raise InputError(f"--device {device!r}: not a device; use cpu, cuda, cuda:N or mps")


def _short(err: BaseException) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return text[:200]


def describe(err: BaseException) -> str:
    """The deepest cause of an error, with the component MONAI names when it wraps one ('Failed to
    instantiate component ...', 'applying transform ...')."""
    component = re.search(r"component '([\w.]+)'", str(err))
    while (err.__cause__ or err.__context__) is not None:
        err = err.__cause__ or err.__context__
    where = f"{component.group(1)}: " if component else ""
    return f"{where}{type(err).__name__}: {_short(err)}"


@contextlib.contextmanager
def bundle_imports(root: Path):
    """The bundle's folder on ``sys.path`` while it is parsed, so that its ``scripts/`` import as
    under ``monai.bundle run``; another bundle's ``scripts`` modules are forgotten first, so that the
    same module names never run one bundle's code for another."""
    for name in [m for m in sys.modules if m == "scripts" or m.startswith("scripts.")]:
        del sys.modules[name]
    sys.path.insert(1, str(root))
    try:
        yield
    finally:
        sys.path.remove(str(root))


def _without_readers(config) -> None:
    """Drop the ``reader`` of every ``LoadImaged`` in the config: medseg hands the case to the loader
    itself, and a reader whose package is missing (ITK) must not stop the bundle."""
    if isinstance(config, dict):
        if str(config.get("_target_", "")).endswith("LoadImaged"):
            config.pop("reader", None)
            config.pop("converter", None)  # PILReader's argument
        config = list(config.values())
    for item in config if isinstance(config, list) else []:
        _without_readers(item)


class BundleParts:
    """The parsed parts of a bundle's inference config, on one device, with its weights loaded."""

    def __init__(self, contract: BundleContract, device: str | None = None, overrides: dict | None = None):
        import torch
        from monai.bundle import ConfigParser

        check_segments(contract)
        self.contract = contract
        self.parser = parser = ConfigParser()
        self.where = contract.root.name
        self._step("configs", lambda: parser.read_config(str(contract.config_file)))
        self._step("metadata", lambda: parser.read_meta(str(contract.root / "configs" / "metadata.json")))
        check_evaluator(parser, self.where)
        parser["bundle_root"] = str(contract.root)
        if device is None:
            device = "cuda:0" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        parser["device"] = self.device  # an object, not an expression: nothing of ours is evaluated
        for key, value in (overrides or {}).items():
            parser[key] = value
        _without_readers(parser.config)
        with bundle_imports(contract.root):
            self.network = self._parse("network" if "network" in parser else "network_def").to(self.device)
            self.preprocessing = self._parse("preprocessing")
            self.inferer = self._parse("inferer")
            self.postprocessing = self._parse("postprocessing")
            self.amp = bool(self._parse("evaluator#amp")) if "evaluator#amp" in parser else False
        self._load_weights()

    def _step(self, what: str, fn):
        try:
            return fn()
        except BundleError:
            raise
        except Exception as err:
            written_for = self.contract.monai_version
            import monai

            note = f" (written for MONAI {written_for}; this is {monai.__version__})" if written_for else ""
            raise BundleError(f"bundle {self.where}: cannot build '{what}': {describe(err)}{note}") from None

    def _parse(self, id_: str) -> Any:
        if id_ not in self.parser:
            raise BundleError(f"bundle {self.where}: inference config has no '{id_}'")
        return self._step(id_, lambda: self.parser.get_parsed_content(id_))

    def _checkpoint_config(self) -> tuple[str | None, str]:
        """The id of the bundle's CheckpointLoader (in ``handlers`` or top level) and its model key."""
        candidates = [f"handlers#{i}" for i, _ in enumerate(self.parser.get("handlers") or [])]
        candidates += [k for k in (self.parser.get() or {}) if "checkpoint" in k.lower()]
        for id_ in candidates:
            item = self.parser.get(id_)
            if isinstance(item, dict) and str(item.get("_target_", "")).endswith(CHECKPOINT_LOADERS):
                keys = list((item.get("load_dict") or {"model": None}).keys())
                return id_, keys[0] if len(keys) == 1 else "model"
        return None, "model"

    def _load_weights(self) -> None:
        import torch

        id_, key = self._checkpoint_config()
        path = self.contract.root / "models" / "model.pt"
        if id_ is not None and f"{id_}#load_path" in self.parser:
            path = Path(str(self._parse(f"{id_}#load_path")))
        if not path.is_file():
            # A bundle may ship untrained (brain_tumor_mri_segmentation: no data to train it on
            # here); say how to get weights rather than only that they are missing.
            root = self.contract.root
            how = (
                f"train it first: medseg train {root} dataset_dir=YOUR_DATA, then use its run folder "
                f"(runs/{root.name}/<time>) or medseg bundle export it, as --bundle "
                f"(see {root / 'docs' / 'README.md'})"
                if any((root / "configs").glob("train.*"))
                else "install the bundle with its models/ folder"
            )
            raise BundleError(f"bundle {self.where} has no trained weights (no {path}): {how}")
        try:
            checkpoint = torch.load(path, map_location=self.device, weights_only=True)
        except Exception as err:
            raise BundleError(f"{path}: cannot load weights safely (weights_only): {_short(err)}") from None
        state = checkpoint.get(key, checkpoint) if isinstance(checkpoint, dict) else checkpoint
        if not isinstance(state, dict):
            raise BundleError(f"{path}: not a state dict (key {key!r})")
        try:
            self.network.load_state_dict(state, strict=True)
        except Exception as err:
            raise BundleError(f"{path}: weights do not fit the bundle's network: {_short(err)}") from None


def check_segments(contract: BundleContract) -> None:
    """``medseg segment`` runs segmentation bundles; a classifier or generator is refused up front."""
    if not contract.segments:
        kinds = ", ".join(f for f in contract.output_formats if f) or "none declared"
        raise BundleError(
            f"bundle {contract.name}: not a segmentation bundle (its metadata declares outputs of format "
            f"{kinds}); run it with python -m monai.bundle run"
        )


def check_evaluator(parser, where: str) -> None:
    """medseg drives the bundle's parts with MONAI's SupervisedEvaluator; a bundle whose own evaluator
    is another class (interactive prompts, custom steps) is refused up front."""
    target = str((parser.get("evaluator") or {}).get("_target_", "SupervisedEvaluator"))
    if not target.endswith("SupervisedEvaluator"):
        raise BundleError(
            f"bundle {where}: runs its own evaluator ({target}), which medseg cannot drive; "
            "use python -m monai.bundle run for it"
        )


def check_case(case: CaseImage, contract: BundleContract) -> None:
    """The case has the channels and spatial dimensions the bundle declares."""
    if case.channels != contract.in_channels:
        names = ", ".join(contract.channel_names)
        raise InputError(
            f"{case.path}: bundle {contract.name} expects {contract.in_channels} input channel(s) ({names}); "
            f"the case has {case.channels} (give one file per channel with --channels, or one image with "
            f"{contract.in_channels} channels)"
        )
    if (
        case.spatial_dims != contract.spatial_dims
        or sum(s > 1 for s in case.spatial_shape) < case.spatial_dims
    ):
        raise InputError(
            f"{case.path}: image of shape {case.spatial_shape} is not a {contract.spatial_dims}D "
            f"{'volume' if contract.spatial_dims == 3 else 'image'}; bundle {contract.name} segments "
            f"{contract.spatial_dims}D images"
        )
    check_finite(case.array, str(case.path))  # whatever the bundle: NaN would give an empty mask


def read_checked(
    images: PathLike | list[PathLike], series: str | int | None, contract: BundleContract
) -> CaseImage:
    """Read a case (one file, a DICOM folder, or one file per channel) and check it fits the bundle;
    needs only the contract, so a bad input is refused before MONAI loads the bundle."""
    case = read_case(images, series, contract.spatial_dims)
    check_case(case, contract)
    return case
