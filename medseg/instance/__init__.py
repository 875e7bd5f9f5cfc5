"""Instance <-> semantic conversions: touching-cell 3-class targets and instance recovery."""

from __future__ import annotations

from medseg.instance.touching import check_instances, classes_to_instances, instances_to_classes

__all__ = ["check_instances", "classes_to_instances", "instances_to_classes"]
