"""Array functions plus thin MONAI dictionary wrappers (dictionary transforms end in ``d``)."""

from __future__ import annotations

from medseg.transforms.antialias import AntiAliasd, antialias, antialias_sigma
from medseg.transforms.brain_mask import BrainFromTissued, brain_from_tissue
from medseg.transforms.elastic import RandElasticDeformd, coarse_displacements, dense_field, elastic_deform
from medseg.transforms.finite import CheckFinited, check_finite
from medseg.transforms.label_intensity import RandLabelIntensityShiftd, shift_label_intensity
from medseg.transforms.lesion_paste import RandLesionPasted, paste_lesion
from medseg.transforms.lung import LungMaskd, lung_mask, lung_region
from medseg.transforms.synthetic_head import HeadDistancesd, RandSyntheticHeadd, head_distances, render_head
from medseg.transforms.touching import ClassesToInstancesd, InstancesToClassesd
from medseg.transforms.weight_map import (
    UNetWeightMapd,
    balanced_class_weights,
    border_cutoff,
    unet_weight_map,
)

__all__ = [
    "AntiAliasd",
    "BrainFromTissued",
    "HeadDistancesd",
    "RandSyntheticHeadd",
    "CheckFinited",
    "ClassesToInstancesd",
    "InstancesToClassesd",
    "LungMaskd",
    "RandLesionPasted",
    "RandElasticDeformd",
    "RandLabelIntensityShiftd",
    "UNetWeightMapd",
    "antialias",
    "antialias_sigma",
    "balanced_class_weights",
    "check_finite",
    "border_cutoff",
    "brain_from_tissue",
    "head_distances",
    "render_head",
    "coarse_displacements",
    "dense_field",
    "elastic_deform",
    "lung_mask",
    "lung_region",
    "paste_lesion",
    "shift_label_intensity",
    "unet_weight_map",
]
