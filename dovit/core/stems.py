"""Early-convolution patch stem (Xiao et al., "Early Convolutions Help Transformers See Better", 2021).

A drop-in for timm's PatchEmbed when training from scratch on small data sets: stride-2 3x3 convs down
to 1/patch resolution, then a 1x1 projection to the embedding width. Output is NHWC like timm's
PatchEmbed with dynamic_img_size, so timm's own position-embedding resampling applies unchanged.
``forward_with_skip`` also returns the 1/4-resolution features for the "skip" decoder.
"""
from __future__ import annotations

import math

import torch
from torch import nn


class ConvStem(nn.Module):
    """grid_size: the token grid (h, w) of the backbone's own PatchEmbed at its configured image size; timm's
    ``_pos_embed`` reads ``patch_embed.grid_size`` as the grid that the position embedding was made for."""

    def __init__(self, patch_size: int, embed_dim: int, grid_size: tuple[int, int],
                 in_channels: int = 3) -> None:
        super().__init__()
        if patch_size & (patch_size - 1) or patch_size < 4:
            raise ValueError(f"the conv stem needs a power-of-two patch size >= 4, got {patch_size}")
        layers: list[nn.Module] = []
        channels = in_channels
        num_stages = int(math.log2(patch_size))
        for stage in range(num_stages):
            out_channels = max(embed_dim // 2 ** (num_stages - stage), 16)
            layers += [
                nn.Conv2d(channels, out_channels, 3, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(out_channels),
                nn.ReLU(inplace=True),
            ]
            channels = out_channels
        layers.append(nn.Conv2d(channels, embed_dim, 1))
        self.layers = nn.Sequential(*layers)
        self.patch_size = (patch_size, patch_size)
        self.grid_size = (int(grid_size[0]), int(grid_size[1]))
        self._skip_end = 6  # layers[:6] = two (conv, BN, ReLU) stages: features at 1/4 resolution
        self.skip_channels = self.layers[self._skip_end - 3].out_channels

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """pixels (B, 3, H, W), H and W multiples of the patch size -> tokens (B, h, w, E)."""
        return self.layers(pixels).permute(0, 2, 3, 1)

    def forward_with_skip(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """tokens (B, h, w, E) and the 1/4-resolution features (B, skip_channels, H/4, W/4)."""
        quarter = self.layers[: self._skip_end](pixels)
        return self.layers[self._skip_end :](quarter).permute(0, 2, 3, 1), quarter


# stem name (``ModelConfig.stem``) -> the module that replaces timm's patch embedding ("patch": timm's own)
STEM_CLASSES = {"conv": ConvStem}
