"""Sample data shipped with medseg, manifests and (later) dataset planning."""

from __future__ import annotations

from medseg.data.samples import REPO_ROOT, manifest_path, sample_dir, sample_path, sample_root

__all__ = ["REPO_ROOT", "manifest_path", "sample_dir", "sample_path", "sample_root"]
