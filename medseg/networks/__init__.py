"""Networks MONAI does not ship: the original unpadded U-Net (2D/3D) and its size arithmetic."""

from __future__ import annotations

from medseg.networks.roi_align import roi_align
from medseg.networks.unet_valid import UNetValid, input_size_for_output, output_size, valid_input_size

__all__ = ["UNetValid", "input_size_for_output", "output_size", "roi_align", "valid_input_size"]
