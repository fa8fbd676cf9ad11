"""Build a hybrid DoViT: a released ESPNetv2 encoder as the patch embedding, its decoder as the head, and the
ViT blocks (with position embedding, class token and final norm) of a trained DoViT checkpoint in between.

Before training the hybrid gives the released network's answers (the blocks enter through a zero-initialised
1x1 conv), mapped to the checkpoint's classes; the encoder's and decoder's weights then travel in the
hybrid's own checkpoint, so nothing reads the released file again.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from .config import ModelConfig
from .espnetv2 import ESPNetv2Segmentation, class_groups, group_logits, released_parts
from .model import DoViTSegmenter


def load_released_espnetv2(model: DoViTSegmenter, path: str | Path) -> None:
    """Load the authors' ESPNetv2 Cityscapes state dict into the hybrid's stem and head (strict)."""
    encoder, decoder = released_parts(path)
    model.vit.patch_embed.encoder.load_state_dict(encoder, strict=True)
    model.decoder.decoder.load_state_dict(decoder, strict=True)


def build_hybrid(
    released: str | Path, blocks_from: DoViTSegmenter | None = None, **options
) -> DoViTSegmenter:
    """A hybrid DoViT (stem and decoder 'espnetv2') with the released weights, and the ViT part copied from
    ``blocks_from`` when given (every ``vit.*`` tensor whose name and shape match, the patch embedding aside).

    options: ModelConfig fields (backbone, decision_layers, class_names, ...); the classes default to
    ``blocks_from``'s. Raises ValueError for classes that no Cityscapes class maps to.
    """
    fields = {}
    if blocks_from is not None:
        source = blocks_from.config
        fields = dict(
            backbone=source.backbone,
            num_classes=source.num_classes,
            class_names=source.class_names,
            class_colors=source.class_colors,
            decision_layers=source.decision_layers,
            input_size=source.input_size,
            mean=source.mean,
            std=source.std,
            ignore_index=source.ignore_index,
            default_xi=source.default_xi,
        )
    fields.update(options, stem="espnetv2", decoder="espnetv2")
    model = DoViTSegmenter(ModelConfig(**fields))
    load_released_espnetv2(model, released)
    if blocks_from is not None:
        shapes = {k: v.shape for k, v in model.state_dict().items()}
        copied = {
            k: v
            for k, v in blocks_from.state_dict().items()
            if (k.startswith("vit.") or k.startswith("aux_heads."))
            and not k.startswith("vit.patch_embed.")
            and shapes.get(k) == v.shape
        }
        model.load_state_dict(copied, strict=False)
    return model


class ReleasedTeacher(nn.Module):
    """The released ESPNetv2 segmenter with its Cityscapes classes mapped to ``class_names`` (frozen, eval):
    ``forward(pixels)`` gives logits at the input size, to distil where it knows more than the labels."""

    def __init__(self, path: str | Path, class_names: list[str]) -> None:
        super().__init__()
        self.network = ESPNetv2Segmentation(num_classes=20)
        self.network.load_released(path)
        self.groups = class_groups(class_names)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> ReleasedTeacher:
        return super().train(False)  # always the released statistics

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return group_logits(self.network(pixels), self.groups)
