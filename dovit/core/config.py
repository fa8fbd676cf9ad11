"""Model configuration: one dataclass, serialised to JSON beside the safetensors weights.

Every field is checked when a config is built (and again before a model is built or saved): types, ranges,
lengths, finite numbers, and caps on the sizes that decide how much memory a model allocates, so that a
bad value fails here with a sentence naming the field instead of deep in torch, or after gigabytes.
"""
from __future__ import annotations

import dataclasses
import difflib
import json
import math
import numbers
from dataclasses import dataclass, field
from typing import Any

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

DECODERS = ("naive", "pup", "skip", "segmenter", "naive_up4", "espnetv2")
STEMS = ("patch", "conv", "espnetv2")
# Aux head kinds. "linear": the paper's H_l (LayerNorm + one 1x1 conv E -> C). The official DoViT code's heads
# (github.com/FLHonker/DoViT-code, MMSegmentation's heads, kept for converted checkpoints): "fcn" = FCNHead
# (1x1 conv E -> aux_head_channels without bias, BatchNorm, ReLU, 1x1 classifier), "setr_up" = SETRUPHead with
# one conv (a LayerNorm first, then the same; its x4 upsampling commutes with the classifier and is left out).
AUX_HEADS = ("linear", "fcn", "setr_up")
# the segmenter decoder's attention head width (Segmenter's, ViT's): heads = channels / 64
SEGMENTER_HEAD_DIM = 64

# Caps on what a config may ask for. Far above any real use (ADE20K has 150 classes, LVIS 1203; Cityscapes
# trains at 1024 x 2048), far below what would exhaust memory: 10**9 classes asked for 8 GB of palette alone.
MAX_CLASSES = 10_000
MAX_DECODER_CHANNELS = 4096
MAX_INPUT_SIDE = 4096  # pixels; a 4096 x 4096 input is a 256 x 256 grid of 16-px patches
MAX_DECISIONS = 64


def default_decision_layers(depth: int) -> tuple[int, ...]:
    """The paper's decision layers: (3, 6, 9) for 12 blocks, (6, 12, 18) for 24, else quarters."""
    step = depth // 4
    return tuple(step * i for i in (1, 2, 3))


@dataclass
class ModelConfig:
    """Everything needed to rebuild a DoViT segmenter and to pre/post-process its images.

    ``decision_layers`` are 1-based block counts: a decision after block 3 means blocks 1-3 form group B_1.
    ``input_size`` is (height, width) of the working resolution; any size works, this is the default.
    Invalid values raise ValueError naming the field (see ``validate``).
    """

    backbone: str = "vit_tiny_patch16_224"
    num_classes: int = 11
    decision_layers: tuple[int, ...] | None = None  # None: paper default for the depth
    decoder: str = "naive"  # SETR-Naive, SETR-PUP, "skip": SETR-Naive + a conv-stem skip (needs stem="conv"),
    # "segmenter": Segmenter's mask transformer (decoder_channels wide, a multiple of 64), or "naive_up4":
    # SETR-Naive upsampling its logits x4 first, as MMSegmentation's SETRUPHead (converted checkpoints)
    decoder_channels: int = 256
    stem: str = "patch"  # "patch": timm's PatchEmbed; "conv": early-convolution stem (Xiao et al. 2021);
    # "espnetv2": ESPNetv2's released encoder, a hybrid ViT (decoder "espnetv2": its own decoder)
    # one of AUX_HEADS: "linear" (the paper's), "fcn" / "setr_up" (the official code's)
    aux_head: str = "linear"
    aux_head_channels: int = 256  # hidden width of the "fcn" / "setr_up" heads (unused by "linear")
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
        self.validate()

    def validate(self) -> None:
        """Check every field and normalise containers to tuples; raise ValueError naming the first bad field.

        Safe to call again after fields were assigned (the model and ``save_checkpoint`` do).
        """
        _check_backbone(self.backbone)
        self.num_classes = _integer("num_classes", self.num_classes, 1, MAX_CLASSES)
        if self.decision_layers is not None:
            self.decision_layers = _decision_layers(self.decision_layers)
        _choice("decoder", self.decoder, DECODERS)
        _choice("stem", self.stem, STEMS)
        _choice("aux_head", self.aux_head, AUX_HEADS)
        self.aux_head_channels = _integer("aux_head_channels", self.aux_head_channels, 1,
                                          MAX_DECODER_CHANNELS)
        if self.decoder == "skip" and self.stem != "conv":
            raise ValueError("decoder 'skip' reads the conv stem's 1/4-resolution features: use stem='conv'")
        if (self.decoder == "espnetv2") != (self.stem == "espnetv2"):
            raise ValueError("stem 'espnetv2' and decoder 'espnetv2' go together (the decoder reads the "
                             "encoder's maps)")
        self.decoder_channels = _integer("decoder_channels", self.decoder_channels, 1, MAX_DECODER_CHANNELS)
        if self.decoder == "segmenter" and self.decoder_channels % SEGMENTER_HEAD_DIM:
            raise ValueError(f"decoder 'segmenter' needs decoder_channels a multiple of {SEGMENTER_HEAD_DIM} "
                             f"(its attention heads are {SEGMENTER_HEAD_DIM} channels wide), got "
                             f"{self.decoder_channels}")
        if not isinstance(self.merge_stopped, bool):
            raise ValueError(f"merge_stopped must be true or false, got {self.merge_stopped!r}")
        self.default_xi = _real("default_xi", self.default_xi, 0.0, 1.0)
        self.input_size = tuple(  # type: ignore[assignment]
            _integer(f"input_size[{i}]", v, 1, MAX_INPUT_SIDE)
            for i, v in enumerate(_sequence("input_size", self.input_size, 2))
        )
        self.mean = tuple(_real(f"mean[{i}]", v) for i, v in enumerate(_sequence("mean", self.mean, 3)))  # type: ignore[assignment]
        self.std = tuple(_real(f"std[{i}]", v) for i, v in enumerate(_sequence("std", self.std, 3)))  # type: ignore[assignment]
        if min(self.std) <= 0.0:  # a zero std turns every pixel into inf or NaN, and the masks into class 0
            raise ValueError(f"std must be positive in every channel, got {self.std}")
        if not self.class_names:
            self.class_names = [f"class {i}" for i in range(self.num_classes)]
        if not self.class_colors:
            self.class_colors = default_palette(self.num_classes)
        names = _sequence("class_names", self.class_names, self.num_classes)
        if not all(isinstance(name, str) for name in names):
            raise ValueError("class_names must all be strings")
        self.class_names = list(names)
        self.class_colors = [  # type: ignore[misc]
            tuple(_integer(f"class_colors[{i}]", c, 0, 255) for c in _sequence(f"class_colors[{i}]", rgb, 3))
            for i, rgb in enumerate(_sequence("class_colors", self.class_colors, self.num_classes))
        ]
        self.drop_path_rate = _real("drop_path_rate", self.drop_path_rate, 0.0, 1.0)
        self.ignore_index = _integer("ignore_index", self.ignore_index, -(2**31), 2**31 - 1)

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        if not isinstance(data, dict):
            raise ValueError(f"a model config must be a JSON object, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown model config keys: {sorted(unknown)}")
        return cls(**data)


def _check_backbone(name: object) -> None:
    import timm  # here, not at the top: reading a config should not need timm until a backbone is named

    if not isinstance(name, str) or not timm.is_model(name):
        close = difflib.get_close_matches(str(name), timm.list_models(), n=3) if isinstance(name, str) else []
        hint = (f" (did you mean {', '.join(close)}?)" if close
                else " (a timm ViT/DeiT name, e.g. vit_tiny_patch16_224)")
        raise ValueError(f"unknown backbone {name!r}{hint}")


def _choice(name: str, value: object, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")


def _integer(name: str, value: object, low: int, high: int) -> int:
    """An int in [low, high]; floats and bools are refused rather than silently truncated."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not low <= value <= high:
        raise ValueError(f"{name} must be an integer in [{low}, {high}], got {value!r}")
    return int(value)


def _real(name: str, value: object, low: float = -math.inf, high: float = math.inf) -> float:
    """A finite number in [low, high] (NaN and infinities are refused)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    if not low <= value <= high:
        raise ValueError(f"{name} must lie in [{low}, {high}], got {value!r}")
    return float(value)


def _sequence(name: str, value: object, length: int) -> tuple:
    if isinstance(value, (str, bytes, dict)) or not hasattr(value, "__len__") or len(value) != length:
        shown = value if not hasattr(value, "__len__") or len(value) <= 8 else f"{len(value)} entries"
        raise ValueError(f"{name} must have {length} entries, got {shown!r}")
    return tuple(value)


def _decision_layers(value: object) -> tuple[int, ...]:
    if (
        isinstance(value, (str, bytes, dict))
        or not hasattr(value, "__len__")
        or not 1 <= len(value) <= MAX_DECISIONS
    ):
        raise ValueError(f"decision_layers must list 1 to {MAX_DECISIONS} block counts (or be None for the "
                         f"paper's default), got {value!r}")
    layers = tuple(_integer("decision_layers", v, 1, 10_000) for v in value)
    if list(layers) != sorted(set(layers)):
        raise ValueError(f"decision_layers must be strictly increasing, got {layers}")
    return layers


def default_palette(num_classes: int) -> list[tuple[int, int, int]]:
    """A deterministic, well-spread palette (golden-ratio hues) for datasets without their own colours."""
    import colorsys

    colors = []
    for i in range(num_classes):
        hue = (i * 0.618033988749895) % 1.0
        r, g, b = colorsys.hsv_to_rgb(hue, 0.65, 0.95)
        colors.append((int(r * 255), int(g * 255), int(b * 255)))
    return colors
