"""The paper's models by name: SETR and Segmenter on ViT-T/S/B/L for ADE20K and Cityscapes.

    model = build_preset("segmenter_vit_s_ade20k", pretrained="vit_small_patch16_384.safetensors")

Each preset is a ModelConfig: the timm ViT (ImageNet-21k weights at 384, as Segmenter and SETR start from),
the paper's decision layers ((3, 6, 9) for 12 blocks, (6, 12, 18) for 24), its training crops (ADE20K
512 x 512, Cityscapes 768 x 768) and MMSegmentation's decoder settings: SETR-Naive as MMSeg computes it
("naive_up4", 256 channels, ImageNet normalisation) and Segmenter's mask transformer (as wide as the ViT,
mean = std = 0.5). default_xi: 0.985 on Cityscapes (the paper's best), 0.98 on ADE20K (its speed runs).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ..core.config import ModelConfig, default_decision_layers
from ..core.model import DoViTSegmenter
from ..data.ade20k_classes import ADE20K_CLASSES, ADE20K_COLORS
from ..data.datasets import CITYSCAPES_CLASSES, CITYSCAPES_COLORS

VIT_SIZES = {"t": ("tiny", 192, 12), "s": ("small", 384, 12), "b": ("base", 768, 12), "l": ("large", 1024,
                                                                                            24)}
DATASETS: dict[str, dict[str, Any]] = {
    "ade20k": dict(num_classes=150, input_size=(512, 512), default_xi=0.98, class_names=list(ADE20K_CLASSES),
                   class_colors=ADE20K_COLORS),
    "cityscapes": dict(num_classes=19, input_size=(768, 768), default_xi=0.985,
                       class_names=CITYSCAPES_CLASSES, class_colors=CITYSCAPES_COLORS),
}
SEGMENTER_NORMALISATION = dict(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))  # MMSeg's Segmenter configs: 127.5


def preset_config(name: str) -> dict[str, Any]:
    """ModelConfig fields of a preset named ``{setr|segmenter}_vit_{t|s|b|l}_{ade20k|cityscapes}``."""
    parts = name.split("_")
    if len(parts) != 4 or parts[0] not in ("setr",
                                           "segmenter") or parts[1] != "vit" or parts[2] not in VIT_SIZES \
            or parts[3] not in DATASETS:
        raise ValueError(f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}")
    method, _, size, dataset = parts
    width_name, width, depth = VIT_SIZES[size]
    fields = dict(backbone=f"vit_{width_name}_patch16_384", decision_layers=default_decision_layers(depth),
                  **DATASETS[dataset])
    if method == "segmenter":
        return dict(fields, decoder="segmenter", decoder_channels=width, **SEGMENTER_NORMALISATION)
    return dict(fields, decoder="naive_up4", decoder_channels=256)


PRESETS = tuple(f"{method}_vit_{size}_{dataset}" for method in ("setr", "segmenter") for size in VIT_SIZES
                for dataset in DATASETS)


def build_preset(name: str, pretrained: str | Path | bool | None = None, **overrides: Any) -> DoViTSegmenter:
    """Build a preset's DoViT segmenter.

    pretrained: None/False for random init, a local timm weights file for the backbone (FileNotFoundError if
    missing), or True for timm's hub weights (needs a network). overrides: ModelConfig fields that replace
    the preset's (e.g. input_size=(64, 64) for a quick test, num_classes for another dataset).
    """
    fields = preset_config(name)
    if "num_classes" in overrides and "class_names" not in overrides:
        fields.pop("class_names")
        fields.pop("class_colors", None)
    return DoViTSegmenter(ModelConfig(**{**fields, **overrides}), pretrained=pretrained)
