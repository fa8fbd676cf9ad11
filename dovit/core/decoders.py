"""Decoders over the reconstructed h x w token map: SETR's (Zheng et al., CVPR 2021), a skip variant, and
Segmenter's mask transformer (Strudel et al., ICCV 2021).

Every decoder has ``flops(grid)``: FLOPs (2 x MACs) of its matmuls and convolutions for an h x w token grid.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.layers import trunc_normal_
from timm.models.vision_transformer import Block
from torch import nn

from .config import SEGMENTER_HEAD_DIM


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
    """SETR-Naive: 1x1 conv + BN + ReLU, 1x1 classifier at 1/patch resolution; the caller upsamples.

    upsample > 1 ("naive_up4"): the logits are first upsampled bilinearly by that factor, as MMSegmentation's
    SETRUPHead does (it upsamples x4 before its 1x1 classifier, which commutes with bilinear upsampling), so
    that with the caller's upsampling to the image a converted MMSeg SETR-Naive gives MMSeg's logits.
    """

    needs_skip = False

    def __init__(self, embed_dim: int, num_classes: int, channels: int = 256, upsample: int = 1) -> None:
        super().__init__()
        self.project = _conv_bn_relu(embed_dim, channels, 1)
        self.classifier = nn.Conv2d(channels, num_classes, 1)
        self.upsample = upsample

    def forward(self, feature_map: torch.Tensor) -> torch.Tensor:
        """feature_map (B, E, h, w) -> logits (B, C, upsample * h, upsample * w)."""
        logits = self.classifier(self.project(feature_map))
        if self.upsample == 1:
            return logits
        return F.interpolate(logits, scale_factor=float(self.upsample), mode="bilinear", align_corners=False)

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
    """SETR-Naive plus one skip from the conv stem's 1/4-resolution features (as DeepLabv3+ uses low-level
    ones).

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
        x = F.interpolate(self.project(feature_map), size=skip.shape[-2:], mode="bilinear",
                          align_corners=False)
        return self.classifier(self.fuse(torch.cat([x, skip], dim=1)))

    def flops(self, grid: tuple[int, int]) -> int:
        h, w = grid
        return (conv_flops(_convs(self.project)[0], h, w) + conv_flops(_convs(self.fuse)[0], 4 * h, 4 * w)
                + conv_flops(self.classifier, 4 * h, 4 * w))


SEGMENTER_LAYERS = 2  # the paper's and MMSegmentation's mask transformer depth


class SegmenterMaskTransformer(nn.Module):
    """Segmenter's mask transformer, laid out as MMSegmentation's ``SegmenterMaskTransformerHead``.

    Patch tokens are projected E -> D (``project``), C learned class embeddings are appended, and the N + C
    tokens run through ``SEGMENTER_LAYERS`` timm ``Block``s (D / 64 heads, MLP 4D; ModelConfig checks D % 64
    == 0) and a LayerNorm. Patch and class features are projected once more, L2-normalised, and their dot
    products are the class masks (N x C), normalised by the mask LayerNorm over classes. Output at the token
    grid; the caller upsamples. LayerNorms use torch's eps 1e-5, as Segmenter and MMSegmentation's head do
    (timm's ViT uses 1e-6).
    """

    needs_skip = False

    def __init__(self, embed_dim: int, num_classes: int, channels: int,
                 num_layers: int = SEGMENTER_LAYERS) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.project = nn.Linear(embed_dim, channels)
        self.class_embedding = nn.Parameter(torch.zeros(1, num_classes, channels))
        self.blocks = nn.Sequential(*(
            Block(channels, channels // SEGMENTER_HEAD_DIM, mlp_ratio=4.0, qkv_bias=True,
                  norm_layer=nn.LayerNorm)
            for _ in range(num_layers)
        ))
        self.norm = nn.LayerNorm(channels)
        self.patch_proj = nn.Linear(channels, channels, bias=False)
        self.classes_proj = nn.Linear(channels, channels, bias=False)
        self.mask_norm = nn.LayerNorm(num_classes)
        trunc_normal_(self.class_embedding, std=0.02)
        for layer in self.modules():
            if isinstance(layer, nn.Linear):
                trunc_normal_(layer.weight, std=0.02)
                if layer.bias is not None:
                    nn.init.zeros_(layer.bias)

    def forward(self, feature_map: torch.Tensor) -> torch.Tensor:
        """feature_map (B, E, h, w) -> mask logits (B, C, h, w)."""
        b, _, h, w = feature_map.shape
        x = self.project(feature_map.flatten(2).transpose(1, 2))  # (B, N, D)
        x = torch.cat([x, self.class_embedding.expand(b, -1, -1)], dim=1)
        x = self.norm(self.blocks(x))
        patches = F.normalize(self.patch_proj(x[:, : -self.num_classes]), dim=2)
        classes = F.normalize(self.classes_proj(x[:, -self.num_classes :]), dim=2)
        masks = self.mask_norm(patches @ classes.transpose(1, 2))  # (B, N, C)
        return masks.transpose(1, 2).reshape(b, self.num_classes, h, w)

    def flops(self, grid: tuple[int, int]) -> int:
        num_patches = grid[0] * grid[1]
        channels = self.patch_proj.in_features
        project = 2 * num_patches * self.project.in_features * channels
        n = num_patches + self.num_classes
        hidden = self.blocks[0].mlp.fc1.out_features
        # linears, QK^T + AV
        block = 2 * n * channels * (3 * channels + channels + 2 * hidden) + 4 * n * n * channels
        heads = 2 * n * channels * channels  # patch_proj on N tokens + classes_proj on C tokens
        masks = 2 * num_patches * self.num_classes * channels
        return project + len(self.blocks) * block + heads + masks


class EncoderDecoderHead(nn.Module):
    """The released encoder's own decoder (ESPNetv2's bottom-up path) as DoViT's decoder, for the hybrid stem.

    The token map enters the encoder's 1/16 map through a 1x1 conv that starts at zero, so before training the
    head gives the released network's output, whatever the untrained blocks do; the decoder then draws thin
    things from the encoder's 1/8, 1/4 and 1/2 maps. Its Cityscapes logits become the model's classes as the
    log of each class group's summed probability (``espnetv2.group_logits``); logits come at 1/2 resolution.
    """

    needs_skip = True

    def __init__(self, embed_dim: int, class_names: list[str]) -> None:
        super().__init__()
        from .espnetv2 import CHANNELS, ESPNetv2Decoder, class_groups

        self.groups = class_groups(class_names)
        self.inject = nn.Conv2d(embed_dim, CHANNELS[-1], 1)
        nn.init.zeros_(self.inject.weight)
        nn.init.zeros_(self.inject.bias)
        self.decoder = ESPNetv2Decoder(num_classes=20).to(memory_format=torch.channels_last)  # as the encoder
        self._flops: dict[tuple[int, int], int] = {}  # per grid: counting runs the decoder once

    def forward(self, feature_map: torch.Tensor, skip: tuple[torch.Tensor, ...]) -> torch.Tensor:
        from .espnetv2 import group_logits

        l1, l2, l3, l4 = skip
        return group_logits(self.decoder(l1, l2, l3, l4 + self.inject(feature_map)), self.groups)

    def flops(self, grid: tuple[int, int]) -> int:
        """FLOPs on an h x w token grid (input 16h x 16w), counted by torch's FlopCounterMode on the modules
        as written (``espnetv2.as_written``: not the dense merge's multiplications by zero)."""
        from .espnetv2 import CHANNELS, as_written
        from .flops import count_flops

        h, w = grid
        if (h, w) not in self._flops:
            device = self.inject.weight.device
            maps = tuple(torch.zeros(1, c, 16 * h // 2 ** (i + 1), 16 * w // 2 ** (i + 1), device=device)
                         for i, c in enumerate(CHANNELS))
            tokens = torch.zeros(1, self.inject.in_channels, h, w, device=device)
            with torch.no_grad(), as_written():
                self._flops[(h, w)] = count_flops(self.forward, tokens, maps)[0]
        return self._flops[(h, w)]


# decoder name (``ModelConfig.decoder``) ->
# builder(embed_dim, num_classes, channels, skip_channels, class_names)
DECODER_BUILDERS = {
    "naive": lambda dim, classes, channels, skip, names: SETRNaive(dim, classes, channels, upsample=1),
    "naive_up4": lambda dim, classes, channels, skip, names: SETRNaive(dim, classes, channels, upsample=4),
    "pup": lambda dim, classes, channels, skip, names: SETRPUP(dim, classes, channels),
    "skip": lambda dim, classes, channels, skip, names: SETRSkip(dim, classes, channels, skip),
    "segmenter": lambda dim, classes, channels, skip, names: SegmenterMaskTransformer(dim, classes, channels),
    "espnetv2": lambda dim, classes, channels, skip, names: EncoderDecoderHead(dim, names or []),
}


def build_decoder(kind: str, embed_dim: int, num_classes: int, channels: int, skip_channels: int = 0,
                  class_names: list[str] | None = None) -> nn.Module:
    if kind not in DECODER_BUILDERS:
        raise ValueError(f"unknown decoder {kind!r}; choose one of {', '.join(DECODER_BUILDERS)}")
    return DECODER_BUILDERS[kind](embed_dim, num_classes, channels, skip_channels, class_names)
