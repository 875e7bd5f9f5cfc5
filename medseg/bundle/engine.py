"""Run any model-zoo-style bundle on cases that medseg reads: (case, bundle) -> ``Prediction``.

The bundle's parts (``medseg.bundle.parts``) run in MONAI's own ``SupervisedEvaluator``, so a case
goes through the steps ``monai.bundle run`` would take: the bundle's preprocessing (its loader handed
the case already read), network, inferer, amp setting and postprocessing, less its ``SaveImaged``
steps. ``prepare`` (read, check, preprocess) is safe to run in a background thread while
``predict`` runs the network on the previous case.
"""

from __future__ import annotations

from collections.abc import Sequence

from medseg.bundle.contract import BundleContract, read_contract
from medseg.bundle.loader import CASE_KEY, replace_loaders
from medseg.bundle.parts import BundleParts, check_device, describe, read_checked
from medseg.bundle.prediction import Prediction, to_prediction, without_savers
from medseg.errors import BundleError, MedsegError
from medseg.io.case import CaseImage
from medseg.typing import PathLike


def root_medseg_error(err: BaseException) -> MedsegError | None:
    """MONAI wraps errors raised inside transforms; find ours in the chain of causes."""
    seen = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, MedsegError):
            return err
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return None


class BundleEngine:
    """A bundle folder parsed and loaded once, applied case after case."""

    def __init__(
        self,
        bundle: PathLike | BundleContract,
        device: str | None = None,
        overrides: dict | None = None,
        progress: bool = False,
    ) -> None:
        self.contract = bundle if isinstance(bundle, BundleContract) else read_contract(bundle)
        self.parts = BundleParts(self.contract, check_device(device), overrides)
        loaders = replace_loaders(self.parts.preprocessing)
        if not loaders:
            raise BundleError(f"bundle {self.contract.name}: its preprocessing has no LoadImaged step")
        self.image_key = loaders[0].keys[0]
        self.postprocessing, self.saved_keys = without_savers(self.parts.postprocessing, self.contract)
        if hasattr(self.parts.inferer, "progress"):
            self.parts.inferer.progress = progress

    @property
    def name(self) -> str:
        return self.contract.name

    def read(self, images: PathLike | Sequence[PathLike], series: str | int | None = None) -> CaseImage:
        """Read a case (one file, a DICOM folder, or one file per channel) and check it fits the bundle."""
        return read_checked(images, series, self.contract)

    def preprocess(self, case: CaseImage) -> dict:
        """The bundle's preprocessing applied to the case as read."""
        try:
            return self.parts.preprocessing({self.image_key: str(case.path), CASE_KEY: case})
        except Exception as err:
            raise root_medseg_error(err) or BundleError(
                f"bundle {self.name}: preprocessing failed on {case.path}: {describe(err)}"
            ) from None

    def predict(self, item: dict, case: CaseImage) -> Prediction:
        """Network, inferer and postprocessing on a preprocessed case; the result on its own grid."""
        from monai.data import list_data_collate
        from monai.engines import SupervisedEvaluator

        evaluator = SupervisedEvaluator(
            device=self.parts.device,
            val_data_loader=[list_data_collate([item])],
            network=self.parts.network,
            inferer=self.parts.inferer,
            postprocessing=self.postprocessing,
            amp=self.parts.amp,
        )
        try:
            evaluator.run()
            return to_prediction(evaluator.state.output[0], self.saved_keys, case, self.contract)
        except Exception as err:
            raise root_medseg_error(err) or BundleError(
                f"bundle {self.name}: inference failed on {case.path}: {describe(err)}"
            ) from None

    def __call__(self, images: PathLike | Sequence[PathLike], series: str | int | None = None) -> Prediction:
        case = self.read(images, series)
        return self.predict(self.preprocess(case), case)
