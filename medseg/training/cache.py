"""One switch for where a bundle caches its preprocessed training data.

- ``cache_dir`` None: MONAI's ``CacheDataset`` (the deterministic transforms' output in memory,
  ``cache_rate`` of the items; 0 caches nothing);
- a folder: MONAI's ``PersistentDataset``, each item computed once ever and kept on disk. Its file
  names hash the item *and* the deterministic transforms with their parameters (``hash_transform``
  with MONAI's ``pickle_hashing``; its ``json_hashing`` falls back to the transforms' class names
  only, so a changed ``spacing`` would reuse a stale cache). One folder can serve many runs and
  bundles: a changed preprocessing writes new files beside the old.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from medseg.typing import PathLike


def cached_dataset(
    data: Sequence[Any],
    transform: Callable,
    cache_dir: PathLike | None = None,
    cache_rate: float = 1.0,
    num_workers: int | None = 0,
) -> Any:
    """``CacheDataset`` in memory, or ``PersistentDataset`` in ``cache_dir``; see the module."""
    from monai.data import CacheDataset, PersistentDataset
    from monai.data.utils import pickle_hashing

    if cache_dir is None:
        return CacheDataset(data, transform, cache_rate=cache_rate, num_workers=num_workers)
    return PersistentDataset(data, transform, cache_dir=str(cache_dir), hash_transform=pickle_hashing)
