"""SETR decoders (Zheng et al., CVPR 2021) over the reconstructed h x w token map."""
from __future__ import annotations

import torch
from torch import nn


def _conv_bn_relu(in_channels: int, out_channels: int, kernel_size: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class SETRNaive(nn.Module):
    """SETR-Naive: 1x1 conv + BN + ReLU, 1x1 classifier at 1/patch resolution; the caller upsamples."""

    upsample_in_decoder = False

    def __init__(self, embed_dim: int, num_classes: int, channels: int = 256) -> None:
        super().__init__()
        self.project = _conv_bn_relu(embed_dim, channels, 1)
        self.classifier = nn.Conv2d(channels, num_classes, 1)

    def forward(self, feature_map: torch.Tensor) -> torch.Tensor:
        """feature_map (B, E, h, w) -> logits (B, C, h, w)."""
        return self.classifier(self.project(feature_map))


class SETRPUP(nn.Module):
    """SETR-PUP: four (3x3 conv + BN + ReLU + 2x bilinear upsampling) stages, then a 1x1 classifier.

    Output is at 16x the token grid (full resolution for patch 16).
    """

    upsample_in_decoder = True

    def __init__(self, embed_dim: int, num_classes: int, channels: int = 256, stages: int = 4) -> None:
        super().__init__()
        self.stages = nn.ModuleList(
            _conv_bn_relu(embed_dim if i == 0 else channels, channels, 3) for i in range(stages)
        )
        self.classifier = nn.Conv2d(channels, num_classes, 1)

    def forward(self, feature_map: torch.Tensor) -> torch.Tensor:
        x = feature_map
        for stage in self.stages:
            x = nn.functional.interpolate(stage(x), scale_factor=2.0, mode="bilinear", align_corners=False)
        return self.classifier(x)


def build_decoder(kind: str, embed_dim: int, num_classes: int, channels: int) -> nn.Module:
    if kind == "naive":
        return SETRNaive(embed_dim, num_classes, channels)
    if kind == "pup":
        return SETRPUP(embed_dim, num_classes, channels)
    raise ValueError(f"unknown decoder {kind!r}; choose 'naive' or 'pup'")
