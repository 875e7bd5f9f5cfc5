"""Array functions plus thin MONAI dictionary wrappers (dictionary transforms end in ``d``)."""

from __future__ import annotations

from medseg.transforms.antialias import AntiAliasd, antialias, antialias_sigma
from medseg.transforms.label_intensity import RandLabelIntensityShiftd, shift_label_intensity

__all__ = ["AntiAliasd", "RandLabelIntensityShiftd", "antialias", "antialias_sigma", "shift_label_intensity"]
