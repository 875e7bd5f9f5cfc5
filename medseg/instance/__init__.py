"""Instance <-> semantic conversions: touching-cell 3-class targets and instance recovery."""

from __future__ import annotations

from medseg.instance.labels import check_instances
from medseg.instance.targets import detections_to_instances, instances_to_targets, mask_targets
from medseg.instance.touching import classes_to_instances, instances_to_classes

__all__ = [
    "check_instances",
    "classes_to_instances",
    "detections_to_instances",
    "instances_to_classes",
    "instances_to_targets",
    "mask_targets",
]
