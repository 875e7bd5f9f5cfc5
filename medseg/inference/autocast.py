"""Mixed precision for any device: MONAI's engines only autocast on CUDA (``torch.autocast("cuda")``)."""

from __future__ import annotations

from typing import Any

import torch
from monai.inferers import Inferer


def autocast_dtype(device: torch.device | str, enabled: bool = True) -> torch.dtype | None:
    """bf16 on CPUs and GPUs that support it, fp16 on older GPUs, None when disabled."""
    device = torch.device(device)
    if not enabled:
        return None
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16


class AutocastInferer(Inferer):
    """Run ``inferer`` (default: a plain forward pass) under ``torch.autocast`` and return fp32.

    Used as ``train#inferer`` so CPU training gets bf16 speed-ups too.
    """

    def __init__(self, inferer: Inferer | None = None, enabled: bool = True) -> None:
        super().__init__()
        self.inferer = inferer
        self.enabled = enabled

    def __call__(self, inputs: torch.Tensor, network: Any, *args: Any, **kwargs: Any) -> torch.Tensor:
        dtype = autocast_dtype(inputs.device, self.enabled)
        with torch.autocast(inputs.device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            out = self.inferer(inputs, network, *args, **kwargs) if self.inferer else network(inputs)
        return out.float()
