"""Array functions plus thin MONAI dictionary wrappers (dictionary transforms end in ``d``)."""

from __future__ import annotations

from medseg.transforms.label_intensity import RandLabelIntensityShiftd, shift_label_intensity

__all__ = ["RandLabelIntensityShiftd", "shift_label_intensity"]
