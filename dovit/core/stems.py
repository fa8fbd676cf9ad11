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


class EncoderStem(nn.Module):
    """A released convolutional encoder as the patch embedding: the hybrid ViT of Dosovitskiy et al. (timm's
    ``HybridEmbed``). ESPNetv2's level-4 map (1/16, 512 channels) is projected to the embedding width by a
    1x1 conv, so each token is one 16 x 16 patch as with timm's PatchEmbed; ``forward_with_skip`` also returns
    the encoder's 1/2, 1/4, 1/8 and 1/16 maps for the encoder's own decoder (``EncoderDecoderHead``).

    ``frozen``: the encoder keeps its released weights and BatchNorm statistics (``train()`` leaves it in eval
    mode and it runs without gradients); the projection still trains.
    """

    def __init__(self, patch_size: int, embed_dim: int, grid_size: tuple[int, int]) -> None:
        super().__init__()
        if patch_size != 16:
            raise ValueError(f"stem 'espnetv2' makes 16-pixel tokens, not {patch_size}-pixel patches")
        from .espnetv2 import CHANNELS, ESPNetv2Encoder

        # channels-last: oneDNN runs the grouped and depth-wise convolutions about 1.9x faster on a CPU
        self.encoder = ESPNetv2Encoder().to(memory_format=torch.channels_last)
        self.proj = nn.Conv2d(CHANNELS[-1], embed_dim, 1)
        self.patch_size = (16, 16)
        self.grid_size = (int(grid_size[0]), int(grid_size[1]))
        self.frozen = False
        self._flops: dict[tuple[int, int], int] = {}  # per input size: counting runs the encoder once

    def freeze_encoder(self, frozen: bool = True) -> None:
        self.frozen = frozen
        self.encoder.requires_grad_(not frozen)
        self.train(self.training)

    def train(self, mode: bool = True) -> EncoderStem:
        super().train(mode)
        if self.frozen:
            self.encoder.eval()
        return self

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.forward_with_skip(pixels)[0]

    def forward_with_skip(self, pixels: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        """pixels (B, 3, H, W), H and W multiples of 16 -> tokens (B, H/16, W/16, E), the encoder's maps."""
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.frozen):
            maps = self.encoder(pixels.contiguous(memory_format=torch.channels_last))
        return self.proj(maps[-1]).permute(0, 2, 3, 1), maps

    def flops(self, height: int, width: int) -> int:
        """FLOPs of the encoder and projection on an H x W input, counted by torch's FlopCounterMode on the
        modules as written (``espnetv2.as_written``)."""
        from .espnetv2 import as_written
        from .flops import count_flops

        if (height, width) not in self._flops:
            probe = torch.zeros(1, 3, height, width, device=self.proj.weight.device)
            with torch.no_grad(), as_written():
                self._flops[(height, width)] = count_flops(self.forward, probe)[0]
        return self._flops[(height, width)]


# stem name (``ModelConfig.stem``) -> class(patch_size, embed_dim, grid_size); "patch" keeps timm's PatchEmbed
STEM_CLASSES = {"conv": ConvStem, "espnetv2": EncoderStem}
