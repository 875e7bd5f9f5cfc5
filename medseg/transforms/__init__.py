"""Array functions plus thin MONAI dictionary wrappers (dictionary transforms end in ``d``)."""

from __future__ import annotations

from medseg.transforms.antialias import AntiAliasd, antialias, antialias_sigma
from medseg.transforms.elastic import RandElasticDeformd, coarse_displacements, dense_field, elastic_deform
from medseg.transforms.label_intensity import RandLabelIntensityShiftd, shift_label_intensity
from medseg.transforms.touching import InstancesToClassesd

__all__ = [
    "AntiAliasd",
    "InstancesToClassesd",
    "RandElasticDeformd",
    "RandLabelIntensityShiftd",
    "antialias",
    "antialias_sigma",
    "coarse_displacements",
    "dense_field",
    "elastic_deform",
    "shift_label_intensity",
]
