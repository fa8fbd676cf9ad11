"""Model configuration: one dataclass, serialised to JSON beside the safetensors weights."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

DECODERS = ("naive", "pup", "skip")
STEMS = ("patch", "conv")


def default_decision_layers(depth: int) -> tuple[int, ...]:
    """The paper's decision layers: (3, 6, 9) for 12 blocks, (6, 12, 18) for 24, else quarters."""
    step = depth // 4
    return tuple(step * i for i in (1, 2, 3))


@dataclass
class ModelConfig:
    """Everything needed to rebuild a DoViT segmenter and to pre/post-process its images.

    ``decision_layers`` are 1-based block counts: a decision after block 3 means blocks 1-3 form group B_1.
    ``input_size`` is (height, width) of the working resolution; any size works, this is the default.
    """

    backbone: str = "vit_tiny_patch16_224"
    num_classes: int = 11
    decision_layers: tuple[int, ...] | None = None  # None: paper default for the depth
    decoder: str = "naive"  # SETR-Naive, SETR-PUP, or "skip": SETR-Naive + a conv-stem skip (needs stem="conv")
    decoder_channels: int = 256
    stem: str = "patch"  # "patch": timm's PatchEmbed; "conv": early-convolution stem (Xiao et al. 2021)
    merge_stopped: bool = True  # Eq. 8 token merging into the class token
    default_xi: float = 0.95
    input_size: tuple[int, int] = (360, 480)
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    class_names: list[str] = field(default_factory=list)
    class_colors: list[tuple[int, int, int]] = field(default_factory=list)
    drop_path_rate: float = 0.0
    ignore_index: int = 255

    def __post_init__(self) -> None:
        if self.decoder not in DECODERS:
            raise ValueError(f"decoder must be one of {DECODERS}, got {self.decoder!r}")
        if self.stem not in STEMS:
            raise ValueError(f"stem must be one of {STEMS}, got {self.stem!r}")
        if self.decoder == "skip" and self.stem != "conv":
            raise ValueError("decoder 'skip' reads the conv stem's 1/4-resolution features: use stem='conv'")
        if self.num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {self.num_classes}")
        if not 0.0 <= self.default_xi <= 1.0:
            raise ValueError(f"default_xi must lie in [0, 1], got {self.default_xi}")
        self.input_size = tuple(int(v) for v in self.input_size)  # type: ignore[assignment]
        self.mean = tuple(float(v) for v in self.mean)  # type: ignore[assignment]
        self.std = tuple(float(v) for v in self.std)  # type: ignore[assignment]
        if self.decision_layers is not None:
            self.decision_layers = tuple(int(v) for v in self.decision_layers)
        if not self.class_names:
            self.class_names = [f"class {i}" for i in range(self.num_classes)]
        if not self.class_colors:
            self.class_colors = default_palette(self.num_classes)
        self.class_colors = [tuple(int(c) for c in rgb) for rgb in self.class_colors]  # type: ignore[misc]
        if len(self.class_names) != self.num_classes or len(self.class_colors) != self.num_classes:
            raise ValueError("class_names and class_colors must each have num_classes entries")

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown model config keys: {sorted(unknown)}")
        return cls(**data)


def default_palette(num_classes: int) -> list[tuple[int, int, int]]:
    """A deterministic, well-spread palette (golden-ratio hues) for datasets without their own colours."""
    import colorsys

    colors = []
    for i in range(num_classes):
        hue = (i * 0.618033988749895) % 1.0
        r, g, b = colorsys.hsv_to_rgb(hue, 0.65, 0.95)
        colors.append((int(r * 255), int(g * 255), int(b * 255)))
    return colors
