"""medseg: 2D/3D medical image segmentation built on MONAI.

Submodules are imported on use (``medseg.io``, ``medseg.transforms``, ...) so that
``import medseg`` stays cheap for the CLI and for bundle configs (``$import medseg``).
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_SUBMODULES = (
    "io",
    "transforms",
    "losses",
    "networks",
    "instance",
    "inference",
    "metrics",
    "data",
    "workflows",
)


def __getattr__(name: str):
    if name in _SUBMODULES:
        return importlib.import_module(f"medseg.{name}")
    raise AttributeError(f"module 'medseg' has no attribute {name!r}")
