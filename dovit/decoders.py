"""SETR decoders (Zheng et al., CVPR 2021) over the reconstructed h x w token map, and a skip variant.

Every decoder has ``flops(grid)``: FLOPs (2 x MACs) of its convolutions for an h x w token grid.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def conv_flops(conv: nn.Conv2d, out_h: int, out_w: int) -> int:
    """2 x MACs of one Conv2d with an out_h x out_w output."""
    k = conv.kernel_size[0] * conv.kernel_size[1]
    return 2 * out_h * out_w * conv.out_channels * (conv.in_channels // conv.groups) * k


def _convs(module: nn.Module) -> list[nn.Conv2d]:
    return [layer for layer in module.modules() if isinstance(layer, nn.Conv2d)]


def _conv_bn_relu(in_channels: int, out_channels: int, kernel_size: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class SETRNaive(nn.Module):
    """SETR-Naive: 1x1 conv + BN + ReLU, 1x1 classifier at 1/patch resolution; the caller upsamples."""

    needs_skip = False

    def __init__(self, embed_dim: int, num_classes: int, channels: int = 256) -> None:
        super().__init__()
        self.project = _conv_bn_relu(embed_dim, channels, 1)
        self.classifier = nn.Conv2d(channels, num_classes, 1)

    def forward(self, feature_map: torch.Tensor) -> torch.Tensor:
        """feature_map (B, E, h, w) -> logits (B, C, h, w)."""
        return self.classifier(self.project(feature_map))

    def flops(self, grid: tuple[int, int]) -> int:
        return sum(conv_flops(conv, *grid) for conv in _convs(self))


class SETRPUP(nn.Module):
    """SETR-PUP: four (3x3 conv + BN + ReLU + 2x bilinear upsampling) stages, then a 1x1 classifier.

    Output is at 16x the token grid (full resolution for patch 16).
    """

    needs_skip = False

    def __init__(self, embed_dim: int, num_classes: int, channels: int = 256, stages: int = 4) -> None:
        super().__init__()
        self.stages = nn.ModuleList(
            _conv_bn_relu(embed_dim if i == 0 else channels, channels, 3) for i in range(stages)
        )
        self.classifier = nn.Conv2d(channels, num_classes, 1)

    def forward(self, feature_map: torch.Tensor) -> torch.Tensor:
        x = feature_map
        for stage in self.stages:
            x = F.interpolate(stage(x), scale_factor=2.0, mode="bilinear", align_corners=False)
        return self.classifier(x)

    def flops(self, grid: tuple[int, int]) -> int:
        h, w = grid
        total = 0
        for stage in self.stages:  # each 3x3 stage runs at the resolution before its 2x upsampling
            total += conv_flops(_convs(stage)[0], h, w)
            h, w = 2 * h, 2 * w
        return total + conv_flops(self.classifier, h, w)


class SETRSkip(nn.Module):
    """SETR-Naive plus one skip from the conv stem's 1/4-resolution features (as DeepLabv3+ uses low-level ones).

    A 1/16 token grid cannot draw a pole 3 px wide; the stem's early features can. 1x1 projection of the
    tokens at 1/16, bilinear x4, concatenation with the stem features, one 3x3 fuse conv and a 1x1
    classifier at 1/4; the caller upsamples the logits x4. Only the decoder changes: token pass, blocks and
    aux heads are as in the paper.
    """

    needs_skip = True

    def __init__(self, embed_dim: int, num_classes: int, channels: int, skip_channels: int) -> None:
        super().__init__()
        self.project = _conv_bn_relu(embed_dim, channels, 1)
        self.fuse = _conv_bn_relu(channels + skip_channels, channels, 3)
        self.classifier = nn.Conv2d(channels, num_classes, 1)

    def forward(self, feature_map: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        """feature_map (B, E, h, w), skip (B, S, 4h, 4w) -> logits (B, C, 4h, 4w)."""
        x = F.interpolate(self.project(feature_map), size=skip.shape[-2:], mode="bilinear", align_corners=False)
        return self.classifier(self.fuse(torch.cat([x, skip], dim=1)))

    def flops(self, grid: tuple[int, int]) -> int:
        h, w = grid
        return (conv_flops(_convs(self.project)[0], h, w) + conv_flops(_convs(self.fuse)[0], 4 * h, 4 * w)
                + conv_flops(self.classifier, 4 * h, 4 * w))


def build_decoder(kind: str, embed_dim: int, num_classes: int, channels: int, skip_channels: int = 0) -> nn.Module:
    if kind == "naive":
        return SETRNaive(embed_dim, num_classes, channels)
    if kind == "pup":
        return SETRPUP(embed_dim, num_classes, channels)
    if kind == "skip":
        return SETRSkip(embed_dim, num_classes, channels, skip_channels)
    raise ValueError(f"unknown decoder {kind!r}; choose 'naive', 'pup' or 'skip'")
