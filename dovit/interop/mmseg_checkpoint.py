"""Converting MMSegmentation ViT checkpoints and the official DoViT code's into DoViT checkpoints (``python -m
dovit.convert`` is its command line). Notes and measurements: docs/library_notes.md.
"""
from __future__ import annotations

import ast
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import timm
import torch
import torch.nn.functional as F

from ..core.config import ModelConfig
from ..core.model import DoViTSegmenter

FORMATS = ("mmseg", "dovit-official")
TIMM_VIT_SIZES = {(192, 12): "tiny", (384, 12): "small", (768, 12): "base", (1024, 24): "large"}


class ConversionError(ValueError):
    """A checkpoint that this converter cannot turn into an equal DoViT model; the message says why."""


# ------------------------------------------------------------------------------------------ reading
def load_mmseg_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(state_dict, meta) of an MMSeg checkpoint file, loaded with ``weights_only=True`` (nothing executed).

    Accepts ``{'state_dict': ..., 'meta': ...}`` (MMEngine's layout) or a bare state dict; strips a DDP
    ``module.`` prefix. Raises ConversionError for a missing file or a file that needs full unpickling.
    """
    path = Path(path)
    if not path.is_file():
        raise ConversionError(f"checkpoint file not found: {path}")
    try:
        document = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # the weights-only unpickler refuses any object that is not plain data
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ConversionError(
            f"{path} cannot be read with torch.load(weights_only=True) ({first}). It holds Python objects "
            "besides tensors (e.g. MMEngine's message hub); re-save just the weights where you trust the "
            "file: torch.save({'state_dict': ckpt['state_dict'], 'meta': {'cfg': ckpt['meta']['cfg'], "
            "'dataset_meta': ckpt['meta'].get('dataset_meta')}}, 'weights.pth')") from error
    if not isinstance(document, dict):
        raise ConversionError(f"{path} holds a {type(document).__name__}, not a checkpoint dictionary")
    meta = document.get("meta") if isinstance(document.get("meta"), dict) else {}
    state = document["state_dict"] if isinstance(document.get("state_dict"), dict) else {
        k: v for k, v in document.items() if k != "meta"}
    others = sorted(str(k) for k, v in state.items() if not isinstance(v, torch.Tensor))
    if others:
        raise ConversionError(f"{path}: state_dict entries that are not tensors: {others[:5]}")
    tensors = {k.removeprefix("module."): v for k, v in state.items()}
    if not tensors:
        raise ConversionError(f"{path} holds no tensors")
    return tensors, meta


def parse_mmengine_config(text: str) -> dict[str, Any]:
    """The top-level assignments of an MMEngine ``pretty_text`` config, as plain data; never executes it.

    Literals, lists, tuples, dicts and ``dict(key=literal, ...)`` calls are read; anything else (a
    variable, an expression) becomes None, so a check that needs it treats it as unknown.
    """
    try:
        tree = ast.parse(text)
    except SyntaxError as error:
        raise ConversionError("the checkpoint's saved config (meta['cfg']) is not readable: "
                              f"{error}") from error
    config = {}
    for statement in tree.body:
        if isinstance(statement,
                      ast.Assign) and len(statement.targets) == 1 and isinstance(statement.targets[0],
                                                                                 ast.Name):
            config[statement.targets[0].id] = _literal(statement.value)
    return config


def _literal(node: ast.AST) -> Any:
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub) and isinstance(node.operand,
                                                                                      ast.Constant):
        return -node.operand.value
    if isinstance(node, (ast.List, ast.Tuple)):
        values = [_literal(item) for item in node.elts]
        return values if isinstance(node, ast.List) else tuple(values)
    if isinstance(node, ast.Dict):
        return {_literal(k): _literal(v) for k, v in zip(node.keys, node.values,
                                                         strict=False) if k is not None}
    if isinstance(node, ast.Call) and isinstance(node.func,
                                                 ast.Name) and node.func.id == "dict" and not node.args:
        return {keyword.arg: _literal(keyword.value) for keyword in node.keywords if keyword.arg}
    return None


# ------------------------------------------------------------------------------------------ analysis
@dataclass
class MMSegArchitecture:
    """What the tensors (and the saved config, where present) say about an MMSeg ViT segmenter."""

    embed_dim: int
    depth: int
    patch_size: int
    pos_grid: tuple[int, int]
    num_classes: int
    decoder: str  # "segmenter", "naive", "naive_up4" or "pup"
    decoder_channels: int
    notes: list[str] = field(default_factory=list)


def saved_config(meta: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """(config, its model dict, its backbone dict) from a checkpoint's meta: the config text is ``cfg`` in
    MMSeg 1.x and ``config`` in 0.x; each part is {} when absent."""
    text = meta.get("cfg", meta.get("config"))
    cfg = parse_mmengine_config(text) if isinstance(text, str) else {}
    model_cfg = cfg.get("model") if isinstance(cfg.get("model"), dict) else {}
    backbone_cfg = model_cfg.get("backbone") if isinstance(model_cfg.get("backbone"), dict) else {}
    return cfg, model_cfg, backbone_cfg


def _count_layers(keys: list[str], prefix: str) -> int:
    indices = {int(m.group(1)) for k in keys if (m := re.match(re.escape(prefix) + r"(\d+)\.", k))}
    if indices and indices != set(range(len(indices))):
        raise ConversionError(f"{prefix}N: layer numbers are not 0..{len(indices) - 1}: {sorted(indices)}")
    return len(indices)


def read_architecture(state: dict[str, torch.Tensor], cfg: dict[str, Any],
                      img_size: tuple[int, int] | None) -> MMSegArchitecture:
    """Read the architecture from the tensors; check the saved config (when present) against DoViT's
    forward."""
    keys = list(state)
    for needed in ("backbone.cls_token", "backbone.pos_embed", "backbone.patch_embed.projection.weight"):
        if needed not in state:
            raise ConversionError(f"not an MMSeg VisionTransformer checkpoint: no {needed!r} "
                                  f"(first keys: {keys[:4]})")
    embed_dim = int(state["backbone.cls_token"].shape[-1])
    patch_size = int(state["backbone.patch_embed.projection.weight"].shape[-1])
    depth = _count_layers(keys, "backbone.layers.")
    if any(k.startswith("backbone.pre_ln") for k in keys):
        raise ConversionError("the backbone has pre_norm=True (a LayerNorm before the blocks), which timm's "
                              "ViT that DoViT drives does not have")
    if any(k.startswith("backbone.patch_embed.norm") for k in keys):
        raise ConversionError("the backbone has patch_norm=True (a LayerNorm in the patch embedding), which "
                              "timm's ViT that DoViT drives does not have")
    final_norm = "backbone.ln1.weight" in state
    model_cfg = cfg.get("model") if isinstance(cfg.get("model"), dict) else {}
    backbone_cfg = model_cfg.get("backbone") if isinstance(model_cfg.get("backbone"), dict) else {}
    head_cfg = model_cfg.get("decode_head") if isinstance(model_cfg.get("decode_head"), dict) else {}
    notes = [] if model_cfg else ["no saved config (meta['cfg']): assumed MMSeg's released ViT settings "
                                  "(class token used, LayerNorm eps 1e-6, attention heads of timm's ViT and "
                                  "of 64 channels in a Segmenter head, the head reads the last block)"]
    _check_backbone_options(backbone_cfg, head_cfg, depth)

    if "decode_head.cls_emb" in state:
        decoder, num_classes, channels = _segmenter_head(state, keys, head_cfg, final_norm)
    elif "decode_head.up_convs.0.0.conv.weight" in state and "decode_head.conv_seg.weight" in state:
        decoder, num_classes, channels = _setr_head(state, keys, head_cfg, final_norm)
    else:
        heads = sorted({k.split(".")[1] for k in keys if k.startswith("decode_head.")})
        raise ConversionError("unknown decode head: DoViT converts SegmenterMaskTransformerHead and "
                              f"SETRUPHead (decode_head parameters seen: {heads[:6]})")
    if head_cfg.get("align_corners"):
        raise ConversionError("the head uses align_corners=True; DoViT upsamples with align_corners=False")
    pos_grid = _pos_grid(state["backbone.pos_embed"], patch_size,
                         img_size or _pair(backbone_cfg.get("img_size")))
    return MMSegArchitecture(embed_dim, depth, patch_size, pos_grid, num_classes, decoder, channels, notes)


def _segmenter_head(state: dict[str, torch.Tensor], keys: list[str], head_cfg: dict,
                    final_norm: bool) -> tuple[str, int, int]:
    """A SegmenterMaskTransformerHead's (decoder, classes, channels), or what DoViT's decoder cannot match."""
    decoder, num_classes = "segmenter", int(state["decode_head.cls_emb"].shape[1])
    channels = (int(state["decode_head.dec_proj.weight"].shape[0])
                if "decode_head.dec_proj.weight" in state else 0)
    layers = _count_layers(keys, "decode_head.layers.")
    if layers != 2:
        raise ConversionError(f"the Segmenter head has {layers} layers; DoViT's segmenter decoder has 2 "
                              "(the paper's)")
    if not final_norm:
        raise ConversionError("Segmenter head on a backbone with final_norm=False: the head would see "
                              "the last block's tokens unnormalised, while DoViT always applies the "
                              "ViT's final LayerNorm")
    heads = head_cfg.get("num_heads")
    if heads is not None and heads * 64 != channels:
        raise ConversionError(f"the Segmenter head has {heads} attention heads for {channels} channels; "
                              "DoViT's segmenter decoder uses heads of 64 channels")
    eps = (head_cfg.get("norm_cfg") or {}).get("eps", 1e-5)
    if eps != 1e-5:
        raise ConversionError(f"the Segmenter head's LayerNorm eps is {eps}; DoViT's segmenter decoder "
                              "uses 1e-5")
    return decoder, num_classes, channels


def _setr_head(state: dict[str, torch.Tensor], keys: list[str], head_cfg: dict,
               final_norm: bool) -> tuple[str, int, int]:
    """A SETRUPHead's (decoder: naive, naive_up4 or pup, classes, channels), or what DoViT cannot match."""
    num_classes = int(state["decode_head.conv_seg.weight"].shape[0])
    convs = _count_layers(keys, "decode_head.up_convs.")
    kernel = int(state["decode_head.up_convs.0.0.conv.weight"].shape[-1])
    channels = int(state["decode_head.up_convs.0.0.conv.weight"].shape[0])
    up_scale = head_cfg.get("up_scale", 4)
    if (convs, kernel) == (1, 1) and up_scale in (1, 4):
        decoder = "naive" if up_scale == 1 else "naive_up4"
    elif (convs, kernel) == (4, 3) and (head_cfg.get("up_scale") in (None, 2)):
        decoder = "pup"
    else:
        raise ConversionError(f"SETRUPHead with {convs} conv(s) of {kernel}x{kernel}, up_scale "
                              f"{up_scale}: DoViT has SETR-Naive (one 1x1 conv, up_scale 1 or 4) and "
                              "SETR-PUP (four 3x3 convs, up_scale 2)")
    if final_norm:
        raise ConversionError("SETR head on a backbone with final_norm=True: two LayerNorms before the "
                              "decoder, where DoViT has one (the ViT's final norm)")
    if any(k.startswith("decode_head.up_convs.") and k.endswith("conv.bias") for k in keys):
        raise ConversionError("SETR head convs without a norm layer (they carry a bias): DoViT's have "
                              "BatchNorm")
    eps = (head_cfg.get("norm_layer") or {}).get("eps", 1e-6)
    if eps != 1e-6:
        raise ConversionError(f"the SETR head's input LayerNorm eps is {eps}; DoViT's ViT norm uses 1e-6")
    return decoder, num_classes, channels


def _check_backbone_options(backbone_cfg: dict, head_cfg: dict, depth: int) -> None:
    """Refuse saved-config options that change the backbone's forward away from timm's ViT."""
    required = {"with_cls_token": True, "output_cls_token": False, "pre_norm": False, "patch_norm": False,
                "out_origin": False, "qkv_bias": True, "num_fcs": 2, "patch_pad": "corner"}
    for option, value in required.items():
        if option in backbone_cfg and backbone_cfg[option] != value:
            raise ConversionError(f"backbone {option}={backbone_cfg[option]!r}: DoViT's timm ViT computes "
                                  f"what MMSeg's {option}={value!r} does")
    eps = (backbone_cfg.get("norm_cfg") or {}).get("eps", 1e-6 if "norm_cfg" not in backbone_cfg else 1e-5)
    if eps != 1e-6:
        raise ConversionError(f"backbone LayerNorm eps {eps}: timm's ViT (and MMSeg's released ViT configs) "
                              "use 1e-6")
    activation = (backbone_cfg.get("act_cfg") or {}).get("type", "GELU")
    if activation != "GELU":
        raise ConversionError(f"backbone activation {activation}: timm's ViT uses GELU")
    out_indices = backbone_cfg.get("out_indices", -1)
    out_indices = [out_indices] if isinstance(out_indices, int) else list(out_indices)
    in_index = head_cfg.get("in_index", -1)
    if isinstance(in_index, int) and -len(out_indices) <= in_index < len(out_indices):
        read = out_indices[in_index]
        if read not in (-1, depth - 1):
            raise ConversionError(f"the decode head reads block {read + 1} of {depth}; DoViT's decoder reads "
                                  "the last")


def _pair(value: Any) -> tuple[int, int] | None:
    if isinstance(value, int):
        return value, value
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(isinstance(v, int) for v in value):
        return int(value[0]), int(value[1])
    return None


def _pos_grid(pos_embed: torch.Tensor, patch_size: int, img_size: tuple[int, int] | None) -> tuple[int, int]:
    """The token grid the stored position embedding is laid out on (MMSeg: img_size // patch)."""
    tokens = int(pos_embed.shape[1]) - 1  # one class-token position first
    if img_size is not None and (img_size[0] // patch_size) * (img_size[1] // patch_size) == tokens:
        return img_size[0] // patch_size, img_size[1] // patch_size
    side = math.isqrt(tokens)
    if side * side != tokens:
        raise ConversionError(f"the position embedding has {tokens} patch positions, not a square grid; pass "
                              "the training crop as --pos-size H W")
    return side, side


# ------------------------------------------------------------------------------------------ mapping
_BLOCK_RULES = [  # MMSeg TransformerEncoderLayer -> timm Block (same tensors, other names)
    (r"ln1\.", "norm1."), (r"ln2\.", "norm2."),
    (r"attn\.attn\.in_proj_weight", "attn.qkv.weight"), (r"attn\.attn\.in_proj_bias", "attn.qkv.bias"),
    (r"attn\.attn\.out_proj\.", "attn.proj."),
    (r"ffn\.layers\.0\.0\.", "mlp.fc1."), (r"ffn\.layers\.1\.", "mlp.fc2."),
]
_RULES = [
    (r"backbone\.cls_token", "vit.cls_token"), (r"backbone\.pos_embed", "vit.pos_embed"),
    (r"backbone\.patch_embed\.projection\.", "vit.patch_embed.proj."),
    (r"backbone\.ln1\.", "vit.norm."),
    *[(r"backbone\.layers\.(\d+)\." + a, r"vit.blocks.\1." + b) for a, b in _BLOCK_RULES],
    (r"decode_head\.cls_emb", "decoder.class_embedding"),
    *[(r"decode_head\.layers\.(\d+)\." + a, r"decoder.blocks.\1." + b) for a, b in _BLOCK_RULES],
    (r"decode_head\.dec_proj\.", "decoder.project."), (r"decode_head\.decoder_norm\.", "decoder.norm."),
    (r"decode_head\.(patch_proj|classes_proj|mask_norm)\.", r"decoder.\1."),
    (r"decode_head\.norm\.", "vit.norm."), (r"decode_head\.conv_seg\.", "decoder.classifier."),
]
_SETR_CONV_RULES = {  # up_convs.i.0 is MMCV's ConvModule: .conv and .bn
    "naive": [(r"decode_head\.up_convs\.0\.0\.conv\.", "decoder.project.0."),
              (r"decode_head\.up_convs\.0\.0\.bn\.", "decoder.project.1.")],
    "pup": [(r"decode_head\.up_convs\.(\d+)\.0\.conv\.", r"decoder.stages.\1.0."),
            (r"decode_head\.up_convs\.(\d+)\.0\.bn\.", r"decoder.stages.\1.1.")],
}


_MODULE_TENSORS = r"(?:weight|bias|running_mean|running_var|num_batches_tracked)"


def dovit_name(key: str, decoder: str) -> str | None:
    """The DoViT parameter an MMSeg key becomes, or None when it has no place.

    A rule ending in '.' names a module (its weight, bias and norm statistics follow); others name a tensor.
    """
    for pattern, replacement in _RULES + _SETR_CONV_RULES.get(decoder.removesuffix("_up4"), []):
        if re.fullmatch(pattern + (_MODULE_TENSORS if pattern.endswith(".") else ""), key):
            return re.sub("^" + pattern, replacement, key)
    return None


def resize_pos_embed(pos_embed: torch.Tensor, old_grid: tuple[int, int], new_grid: tuple[int, int],
                     mode: str) -> torch.Tensor:
    """MMSeg's ``VisionTransformer.resize_pos_embed``: (1, 1 + N, E) from old_grid to new_grid, class slot
    kept."""
    if old_grid == new_grid:
        return pos_embed
    cls_slot, grid = pos_embed[:, :1], pos_embed[:, 1:]
    grid = grid.reshape(1, *old_grid, -1).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=new_grid, mode=mode, align_corners=False)
    return torch.cat([cls_slot, grid.flatten(2).transpose(1, 2)], dim=1)


def timm_backbone_name(embed_dim: int, depth: int, patch_size: int) -> str:
    """timm's ViT for a width, depth and patch (ViT-T/S/B/L); others must be named with --backbone."""
    size = TIMM_VIT_SIZES.get((embed_dim, depth))
    name = f"vit_{size}_patch{patch_size}_224" if size else None
    if name is None or not timm.is_model(name):
        raise ConversionError(f"no timm ViT known for width {embed_dim}, depth {depth}, patch {patch_size}: "
                              "name one with --backbone")
    return name


def convert_mmseg(
    state: dict[str, torch.Tensor], meta: dict[str, Any] | None = None, backbone: str | None = None,
    input_size: tuple[int, int] | None = None, num_classes: int | None = None, skip_auxiliary: bool = False,
    pos_size: tuple[int, int] | None = None, config_fields: dict[str, Any] | None = None,
    aux_tensors: dict[str, torch.Tensor] | None = None,
) -> tuple[DoViTSegmenter, list[str]]:
    """Build the DoViT model equal to an MMSeg ViT segmenter; return it (eval mode) and notes for the user.

    state: MMSeg parameter names -> tensors (``backbone.*``, ``decode_head.*``, ``auxiliary_head.*``).
    meta: the checkpoint's meta, optional: the saved config text (``cfg`` in MMSeg 1.x, ``config`` in 0.x) and
    class names and palette (``dataset_meta`` in 1.x, ``CLASSES`` / ``PALETTE`` in 0.x).
    input_size: (H, W) working size; default the saved config's crop, else the position embedding's grid.
    config_fields: ModelConfig fields the tensors do not decide (decision_layers, default_xi, aux_head).
    aux_tensors: the aux heads' tensors under DoViT names (``aux_heads.K.*``); when given they must fill every
    aux head tensor, else the aux heads start random.
    Raises ConversionError for anything that cannot be placed or is not computed the same way.
    """
    meta = meta or {}
    cfg, model_cfg, backbone_cfg = saved_config(meta)
    auxiliary = sorted(k for k in state if k.startswith("auxiliary_head."))
    if auxiliary and not skip_auxiliary:
        raise ConversionError(f"{len(auxiliary)} auxiliary_head tensors (MMSeg's training-only heads, e.g. "
                              f"{auxiliary[0]}) have no place in DoViT, whose aux heads sit at the decision "
                              "layers: pass --skip-auxiliary to leave them out")
    state = {k: v for k, v in state.items() if not k.startswith("auxiliary_head.")}
    arch = read_architecture(state, cfg, pos_size)
    notes = list(arch.notes) + ([f"left out {len(auxiliary)} auxiliary_head tensors (--skip-auxiliary)"]
                                if auxiliary else [])
    if num_classes is not None and num_classes != arch.num_classes:
        raise ConversionError(f"--num-classes {num_classes}, but the checkpoint's head has "
                              f"{arch.num_classes} classes")
    backbone = backbone or timm_backbone_name(arch.embed_dim, arch.depth, arch.patch_size)
    crop = _pair(cfg.get("crop_size")) or _pair(backbone_cfg.get("img_size"))
    input_size = tuple(input_size) if input_size else crop or (arch.pos_grid[0] * arch.patch_size,
                                                               arch.pos_grid[1] * arch.patch_size)
    config = ModelConfig(backbone=backbone, num_classes=arch.num_classes, decoder=arch.decoder,
                         decoder_channels=arch.decoder_channels, input_size=input_size,
                         **_normalisation(model_cfg, cfg, arch.decoder, notes),
                         **_class_metadata(meta, arch.num_classes, cfg), **(config_fields or {}))
    model = DoViTSegmenter(config)
    _check_backbone_matches(model, arch, backbone, backbone_cfg)
    mapped = _map_tensors(state, arch, model, backbone_cfg)
    _load_exactly(model, {**mapped, **(aux_tensors or {})}, with_aux=bool(aux_tensors))
    return model.eval(), notes


def _check_backbone_matches(model: DoViTSegmenter, arch: MMSegArchitecture, backbone: str,
                            backbone_cfg: dict) -> None:
    """The timm backbone has the checkpoint's patch, depth, width and (if the config says) attention heads."""
    if (model.patch_size, len(model.vit.blocks), model.embed_dim) != (arch.patch_size, arch.depth,
                                                                      arch.embed_dim):
        raise ConversionError(f"{backbone} has patch {model.patch_size}, {len(model.vit.blocks)} blocks, "
                              f"width {model.embed_dim}; the checkpoint has {arch.patch_size}, {arch.depth}, "
                              f"{arch.embed_dim}")
    heads, timm_heads = backbone_cfg.get("num_heads"), int(model.vit.blocks[0].attn.num_heads)
    if heads is not None and heads != timm_heads:  # not in the tensors: only a saved config can tell
        raise ConversionError(f"the checkpoint's ViT has {heads} attention heads, {backbone} has "
                              f"{timm_heads}")


def _normalisation(model_cfg: dict, cfg: dict, decoder: str, notes: list[str]) -> dict[str, Any]:
    """mean/std in [0, 1] units from the saved data preprocessor (1.x) or img_norm_cfg (0.x), else MMSeg's
    defaults for the head."""
    pre = model_cfg.get("data_preprocessor") or cfg.get("data_preprocessor") or cfg.get("img_norm_cfg") or {}
    mean, std = pre.get("mean"), pre.get("std")
    if mean is None or std is None or len(mean) != 3 or len(std) != 3:
        mean, std = ((127.5,) * 3, (127.5,) * 3) if decoder == "segmenter" else (
            (123.675, 116.28, 103.53), (58.395, 57.12, 57.375))
        notes.append("no saved normalisation: used MMSeg's "
                     f"{'Segmenter' if decoder == 'segmenter' else 'SETR'} configs' mean {mean} and std "
                     f"{std} (0-255 units)")
    if pre.get("bgr_to_rgb", pre.get("to_rgb")) is False:
        raise ConversionError("the model was trained on BGR images (bgr_to_rgb=False); DoViT feeds RGB")
    return dict(mean=tuple(v / 255.0 for v in mean), std=tuple(v / 255.0 for v in std))


def _dataset_type(cfg: dict) -> str:
    """The data set class a saved MMSeg config names (1.x ``dataset_type`` / dataloader, 0.x
    ``data.train``)."""
    loader = cfg.get("train_dataloader") if isinstance(cfg.get("train_dataloader"), dict) else {}
    data = cfg.get("data") if isinstance(cfg.get("data"), dict) else {}
    for candidate in (cfg.get("dataset_type"), (loader.get("dataset") or {}).get("type"),
                      (data.get("train") or {}).get("type") if isinstance(data.get("train"), dict) else None):
        if isinstance(candidate, str):
            return candidate
    return ""


def _class_metadata(meta: dict, num_classes: int, cfg: dict | None = None) -> dict[str, Any]:
    """Class names and colours saved with the checkpoint; else, when its config names Cityscapes (19 classes)
    or ADE20K (150), that data set's names and standard palette."""
    from ..data.ade20k_classes import ADE20K_CLASSES, ADE20K_COLORS
    from ..data.datasets import CITYSCAPES_CLASSES, CITYSCAPES_COLORS

    dataset = meta.get("dataset_meta") if isinstance(meta.get("dataset_meta"), dict) else {}
    names, palette = dataset.get("classes", meta.get("CLASSES")), dataset.get("palette", meta.get("PALETTE"))
    kind = _dataset_type(cfg or {}).lower()
    if names is None and "cityscapes" in kind and num_classes == len(CITYSCAPES_CLASSES):
        names, palette = CITYSCAPES_CLASSES, palette if palette is not None else CITYSCAPES_COLORS
    elif names is None and "ade20k" in kind and num_classes == 150:
        names, palette = list(ADE20K_CLASSES), palette if palette is not None else ADE20K_COLORS
    found = {}
    if names is not None and len(names) == num_classes:
        found["class_names"] = [str(name) for name in names]
    if palette is not None and len(palette) == num_classes:
        found["class_colors"] = [tuple(int(c) for c in rgb) for rgb in palette]
    return found


def _map_tensors(state: dict[str, torch.Tensor], arch: MMSegArchitecture, model: DoViTSegmenter,
                 backbone_cfg: dict) -> dict[str, torch.Tensor]:
    """MMSeg tensors under DoViT names and shapes; refuses a key with no place or a shape that differs."""
    mapped, unplaced = {}, []
    for key, tensor in state.items():
        name = dovit_name(key, arch.decoder)
        if name is None:
            unplaced.append(key)
        elif name in mapped:
            raise ConversionError(f"{key} and another tensor both map to {name}")
        else:
            mapped[name] = tensor
    if unplaced:
        raise ConversionError(f"{len(unplaced)} tensors have no place in a DoViT {arch.decoder} model: "
                              f"{', '.join(unplaced[:6])}{' ...' if len(unplaced) > 6 else ''}")
    grid = tuple(int(s) for s in model.vit.patch_embed.grid_size)
    mode = backbone_cfg.get("interpolate_mode") or "bicubic"
    mapped["vit.pos_embed"] = resize_pos_embed(mapped["vit.pos_embed"], arch.pos_grid, grid, mode)
    projection_bias = "vit.patch_embed.proj.bias"
    if projection_bias not in mapped and projection_bias in model.state_dict():
        mapped[projection_bias] = torch.zeros(arch.embed_dim)  # MMSeg's default patch_bias=False: a zero bias
    return mapped


def _load_exactly(model: DoViTSegmenter, mapped: dict[str, torch.Tensor], with_aux: bool = False) -> None:
    """Load every mapped tensor; every model tensor (but the aux heads' unless with_aux) must be covered,
    shapes must agree."""
    target = model.state_dict()
    wrong = [f"{k} {tuple(v.shape)} vs {tuple(target[k].shape)}" for k, v in mapped.items()
             if k in target and v.shape != target[k].shape]
    extra = sorted(set(mapped) - set(target))
    missing = sorted(k for k in set(target) - set(mapped) if with_aux or not k.startswith("aux_heads."))
    if wrong or extra or missing:
        parts = [f"shapes differ: {'; '.join(wrong[:4])}" if wrong else "",
                 f"no such DoViT tensor: {', '.join(extra[:4])}" if extra else "",
                 f"DoViT tensors the checkpoint does not fill: {', '.join(missing[:4])}" if missing else ""]
        raise ConversionError("the checkpoint does not match the DoViT model: " + "; ".join(p for p in parts
                                                                                            if p))
    model.load_state_dict({k: v.to(target[k].dtype) for k, v in mapped.items()}, strict=False)


# ------------------------------------------------------------------------------------------ official DoViT
# code The official code (github.com/FLHonker/DoViT-code, MMSegmentation 0.x): its ``DoViT`` backbone
# (mmseg/models/backbones/do_vit.py) is MMSeg's VisionTransformer with timm's attention (``attn.qkv``,
# ``attn.proj``: tools/model_converters/mmseg2dovit.py renames MMSeg's ``attn.attn.in_proj_*`` /
# ``attn.attn.out_proj`` to these) and holds the aux heads itself (``backbone.auxiliary_head.K``, built by its
# ``DoEncoderDecoder``). ``DoViT.forward`` runs aux head K on the tokens entering layer out_indices[K], i.e.
# after out_indices[K] blocks: decision layers = out_indices[:-1], (2, 5, 8) in its ViT-S/B configs and (6,
# 12, 18) in its ViT-L ones. Its distillation runs save ``student.`` / ``teacher.`` / ``generation.``.
OFFICIAL_DECISION_LAYERS = {12: (2, 5, 8), 24: (6, 12, 18)}  # the official configs' out_indices[:-1] by depth
_OFFICIAL_ATTENTION = [(r"(backbone\.layers\.\d+\.attn\.)qkv\.(weight|bias)", r"\1attn.in_proj_\2"),
                       (r"(backbone\.layers\.\d+\.attn\.)proj\.(weight|bias)", r"\1attn.out_proj.\2")]
_DISTILLER_PARTS = ("teacher.", "generation.", "distill_losses.")


def mmseg_name(official_key: str) -> str:
    """The MMSeg name of an official DoViT key (timm-style attention back to MMSeg's); others are
    unchanged."""
    for pattern, replacement in _OFFICIAL_ATTENTION:
        if re.fullmatch(pattern, official_key):
            return re.sub(pattern, replacement, official_key)
    return official_key


def convert_dovit_official(
    state: dict[str, torch.Tensor], meta: dict[str, Any] | None = None, backbone: str | None = None,
    input_size: tuple[int, int] | None = None, num_classes: int | None = None, skip_auxiliary: bool = False,
    pos_size: tuple[int, int] | None = None,
) -> tuple[DoViTSegmenter, list[str]]:
    """Build the DoViT model equal, at xi = 1, to an official DoViT checkpoint, aux heads included; return it
    and notes.

    The backbone and decode head convert exactly as MMSeg's (see ``convert_mmseg``); the decision layers come
    from the saved config's out_indices (else the official configs' for the depth) and default_xi from its
    exit_conf. The official aux heads become DoViT aux heads of the same structure (``official_aux_heads``:
    FCNHead -> aux_head "fcn", SETRUPHead -> "setr_up"), so their logits at the token grid are the official
    ones; a head of another structure is refused by name. skip_auxiliary leaves them out and DoViT's default
    heads start random (train them with ``dovit.train --stage dovit``).
    Below xi = 1 the two token passes differ anyway: the official code also stops tokens whose confidence is
    under diff_conf, and merges (cls + mean of all stopped tokens) / 2 once over 10 % stopped.
    """
    meta, notes = meta or {}, []
    if any(key.startswith("student.") for key in state):
        left_out = [key for key in state if key.startswith(_DISTILLER_PARTS)]
        state = {key.removeprefix("student."): value for key, value in state.items()
                 if not key.startswith(_DISTILLER_PARTS)}
        notes.append(f"a distillation checkpoint: converted its student, left out {len(left_out)} teacher / "
                     "generation tensors")
    auxiliary = {key: value for key, value in state.items() if key.startswith(_OFFICIAL_AUX_PREFIX)}
    state = {mmseg_name(key): value for key, value in state.items() if key not in auxiliary}
    heads = sorted({int(key.split(".")[2]) for key in auxiliary if key.split(".")[2].isdigit()})
    _, model_cfg, backbone_cfg = saved_config(meta)
    depth = _count_layers(list(state), "backbone.layers.")
    decisions = _official_decision_layers(backbone_cfg, depth, len(heads), notes)
    fields: dict[str, Any] = {"decision_layers": decisions} if decisions else {}
    aux_tensors: dict[str, torch.Tensor] = {}
    if auxiliary and skip_auxiliary:
        notes.append(f"left out the {len(heads)} official aux heads ({len(auxiliary)} tensors, "
                     "--skip-auxiliary): DoViT's start random")
    elif auxiliary:
        aux_fields, aux_tensors = official_aux_heads(auxiliary, model_cfg.get("auxiliary_head"), notes)
        fields.update(aux_fields)
    exit_conf = backbone_cfg.get("exit_conf")
    if isinstance(exit_conf, (list, tuple)) and exit_conf and len(set(exit_conf)) == 1:
        exit_conf = exit_conf[0]
    if isinstance(exit_conf, (int, float)) and not isinstance(exit_conf, bool) and 0.0 <= exit_conf <= 1.0:
        fields["default_xi"] = float(exit_conf)
    elif exit_conf is not None:
        notes.append(f"exit_conf {exit_conf!r} is not one threshold in [0, 1]: default xi left at DoViT's")
    diff_conf = backbone_cfg.get("diff_conf")
    if isinstance(diff_conf, (int, float)) and diff_conf > 0:
        notes.append("the official model also stopped tokens whose confidence was below diff_conf "
                     f"{diff_conf} (its 'confidence rise' test compares with a score that is never updated "
                     "from 0); DoViT stops on the threshold xi alone (Eq. 4)")
    model, more = convert_mmseg(state, meta, backbone=backbone, input_size=input_size,
                                num_classes=num_classes,
                                skip_auxiliary=skip_auxiliary, pos_size=pos_size, config_fields=fields,
                                aux_tensors=aux_tensors)
    return model, notes + more


# Official aux head layouts (MMSeg 0.x module names under backbone.auxiliary_head.K.) -> DoViT's (under
# aux_heads.K.), by aux_head kind. MMCV's ConvModule with a norm has a conv without bias and a ``bn``.
_BATCH_NORM = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
_OFFICIAL_AUX_PREFIX = "backbone.auxiliary_head."
_OFFICIAL_AUX_LAYOUTS = {
    "fcn": {"convs.0.conv.weight": "conv.weight", **{f"convs.0.bn.{t}": f"bn.{t}" for t in _BATCH_NORM},
            "conv_seg.weight": "classifier.weight", "conv_seg.bias": "classifier.bias"},
    "setr_up": {"norm.weight": "norm.weight", "norm.bias": "norm.bias",
                "up_convs.0.0.conv.weight": "conv.weight",
                **{f"up_convs.0.0.bn.{t}": f"bn.{t}" for t in _BATCH_NORM},
                "conv_seg.weight": "classifier.weight", "conv_seg.bias": "classifier.bias"},
}
_OFFICIAL_AUX_TYPES = {"fcn": "FCNHead", "setr_up": "SETRUPHead"}


def official_aux_heads(auxiliary: dict[str, torch.Tensor], head_cfgs: Any,
                       notes: list[str]) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """(ModelConfig fields, tensors under DoViT names) for the official aux heads
    ``backbone.auxiliary_head.K.*``.

    Places FCNHead (num_convs=1, kernel_size=1, concat_input=False) as aux_head "fcn" and SETRUPHead
    (num_convs=1, kernel_size=1) as "setr_up", both with a BatchNorm'd conv, every tensor (BatchNorm running
    statistics included) by name; head_cfgs (the saved config's auxiliary_head list, or None) is checked for
    what the tensors do not show (activation, norm eps). Any tensor or setting it cannot place exactly raises
    ConversionError naming it: never a partial load.
    """
    by_head: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in auxiliary.items():
        index, _, name = key.removeprefix(_OFFICIAL_AUX_PREFIX).partition(".")
        if not index.isdigit():
            raise ConversionError(f"{key}: not an official aux head tensor (backbone.auxiliary_head.K.*); "
                                  "pass --skip-auxiliary to leave the aux heads out")
        by_head.setdefault(index, {})[name] = tensor
    if sorted(by_head, key=int) != [str(k) for k in range(len(by_head))]:
        raise ConversionError(f"official aux heads numbered {sorted(by_head, key=int)}, not "
                              f"0..{len(by_head) - 1}")
    kinds, tensors, channels = set(), {}, set()
    for index, names in sorted(by_head.items(), key=lambda item: int(item[0])):
        kind = _official_aux_kind(index, names)
        kinds.add(kind)
        layout = _OFFICIAL_AUX_LAYOUTS[kind]
        for name, tensor in names.items():
            tensors[f"aux_heads.{index}.{layout[name]}"] = tensor
        channels.add(int(names[next(n for n in layout if layout[n] == "conv.weight")].shape[0]))
    if len(kinds) > 1 or len(channels) > 1:
        raise ConversionError(f"the official aux heads differ in type or width ({sorted(kinds)}, "
                              f"{sorted(channels)} channels); DoViT's aux heads are all of one kind: pass "
                              "--skip-auxiliary")
    kind, width = kinds.pop(), channels.pop()
    _check_official_aux_configs(head_cfgs, kind, len(by_head), notes)
    notes.append(f"converted the {len(by_head)} official aux heads ({_OFFICIAL_AUX_TYPES[kind]}, {width} "
                 f"channels) as aux_head {kind!r}")
    if kind == "setr_up":
        notes.append("the official SETRUPHead aux heads upsample their logits (up_scale) and average each "
                     "token's confidence over its cell; DoViT takes Eq. 3 on the same logits at the token "
                     "grid, so tokens near xi can decide differently")
    return {"aux_head": kind, "aux_head_channels": width}, tensors


def _official_aux_kind(index: str, names: dict[str, torch.Tensor]) -> str:
    """The aux_head kind whose layout names exactly these tensors, with 1x1 convs; else ConversionError
    why."""
    for kind, layout in _OFFICIAL_AUX_LAYOUTS.items():
        if set(names) == set(layout):
            kernels = {tuple(names[n].shape[-2:]) for n in layout if n.endswith(("conv.weight",
                                                                                 "conv_seg.weight"))}
            if kernels != {(1, 1)}:
                raise ConversionError(f"official aux head {index} ({_OFFICIAL_AUX_TYPES[kind]}) has "
                                      f"{sorted(kernels)} convs; DoViT places kernel_size=1 heads only: pass "
                                      "--skip-auxiliary")
            return kind
    head = f"{_OFFICIAL_AUX_PREFIX}{index}."
    reasons = [reason for test, reason in [
        (any(n.startswith("conv_cat.") for n in names), "FCNHead concat_input=True (conv_cat)"),
        (any(n.startswith(("convs.1.", "up_convs.1.")) for n in names),
         "more than one conv (num_convs > 1; SETRUPHead's would upsample before a ReLU, not computable at "
         "the token grid)"),
        (any(n.endswith("conv.bias") for n in names) or not any(".bn." in n for n in names),
         "convs without BatchNorm"),
    ] if test]
    unplaced = sorted(head + n for n in names if not any(n in layout
                                                         for layout in _OFFICIAL_AUX_LAYOUTS.values()))
    missing = sorted(set(_OFFICIAL_AUX_LAYOUTS["setr_up" if "norm.weight" in names else "fcn"]) - set(names))
    detail = "; ".join(reasons + ([f"tensors with no place: {', '.join(unplaced[:4])}"] if unplaced else [])
                       + ([f"lacks {', '.join(head + n for n in missing[:4])}"] if missing else []))
    raise ConversionError(f"official aux head {index} is not one DoViT can place ({detail}): DoViT places "
                          "FCNHead (num_convs=1, kernel_size=1, concat_input=False) and SETRUPHead "
                          "(num_convs=1, kernel_size=1) heads with BatchNorm; pass --skip-auxiliary to leave "
                          "them out and train DoViT's")


def _check_official_aux_configs(head_cfgs: Any, kind: str, heads: int, notes: list[str]) -> None:
    """Refuse saved aux head settings the tensors do not show and DoViT's head does not compute."""
    if (
        not isinstance(head_cfgs, (list, tuple))
        or len(head_cfgs) != heads
        or not all(isinstance(c, dict) for c in head_cfgs)
    ):
        notes.append("no saved config for the official aux heads: assumed its configs' ReLU and BatchNorm "
                     "eps 1e-5"
                     + (" and input LayerNorm eps 1e-6" if kind == "setr_up" else ""))
        return
    for index, head_cfg in enumerate(head_cfgs):
        checks = [("type", head_cfg.get("type", _OFFICIAL_AUX_TYPES[kind]), _OFFICIAL_AUX_TYPES[kind]),
                  ("act_cfg", (head_cfg.get("act_cfg") or {"type": "ReLU"}).get("type"), "ReLU"),
                  ("norm_cfg eps", (head_cfg.get("norm_cfg") or {}).get("eps", 1e-5), 1e-5),
                  ("input_transform", head_cfg.get("input_transform"), None)]
        if kind == "setr_up":
            checks.append(("norm_layer eps", (head_cfg.get("norm_layer") or {}).get("eps", 1e-6), 1e-6))
        for option, value, expected in checks:
            if value != expected:
                raise ConversionError(f"official aux head {index}: {option} {value!r}, where DoViT's "
                                      f"{kind!r} head computes {expected!r}; pass --skip-auxiliary to leave "
                                      "the aux heads out")


def _official_decision_layers(backbone_cfg: dict, depth: int, heads: int,
                              notes: list[str]) -> tuple[int, ...] | None:
    """out_indices[:-1] of the saved config, else the official configs' layers for the depth; checked against
    the number of aux heads in the checkpoint (0 when there are none to check)."""
    out_indices = backbone_cfg.get("out_indices")
    if (
        isinstance(out_indices, (list, tuple))
        and len(out_indices) > 1
        and all(isinstance(i, int) for i in out_indices)
    ):
        decisions = tuple(out_indices[:-1])
    else:
        decisions = OFFICIAL_DECISION_LAYERS.get(depth)
        notes.append(f"no out_indices in a saved config: decision layers {decisions or 'DoViT default'}, the "
                     f"official configs' for {depth} blocks")
    if heads and decisions is not None and heads != len(decisions):
        raise ConversionError(f"the checkpoint has {heads} aux heads but its decision layers are "
                              f"{decisions}: cannot tell where each head sat")
    return decisions
