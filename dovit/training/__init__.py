"""Training: the dense teacher and DoViT student loop, its losses, the paper's presets, label-free
calibration."""
