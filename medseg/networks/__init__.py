"""Networks: original U-Net, Mask R-CNN parts (later issues)."""
