"""Checkpoints from other code bases (MMSegmentation, the official DoViT code) into DoViT checkpoints."""
