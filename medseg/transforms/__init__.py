"""Array functions plus thin MONAI dictionary wrappers (dictionary transforms end in ``d``)."""

from __future__ import annotations

from medseg.transforms.antialias import AntiAliasd, antialias, antialias_sigma
from medseg.transforms.elastic import RandElasticDeformd, coarse_displacements, dense_field, elastic_deform
from medseg.transforms.finite import CheckFinited, check_finite
from medseg.transforms.label_intensity import RandLabelIntensityShiftd, shift_label_intensity
from medseg.transforms.touching import ClassesToInstancesd, InstancesToClassesd
from medseg.transforms.weight_map import (
    UNetWeightMapd,
    balanced_class_weights,
    border_cutoff,
    unet_weight_map,
)

__all__ = [
    "AntiAliasd",
    "CheckFinited",
    "ClassesToInstancesd",
    "InstancesToClassesd",
    "RandElasticDeformd",
    "RandLabelIntensityShiftd",
    "UNetWeightMapd",
    "antialias",
    "antialias_sigma",
    "balanced_class_weights",
    "check_finite",
    "border_cutoff",
    "coarse_displacements",
    "dense_field",
    "elastic_deform",
    "shift_label_intensity",
    "unet_weight_map",
]
