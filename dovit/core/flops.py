"""FLOPs of a DoViT forward: an analytic formula, and a measurement with torch's FlopCounterMode.

Convention: FLOPs = 2 x multiply-accumulates of matmuls, convolutions and attention, the convention of
``torch.utils.flop_counter``. MMSegmentation/fvcore report MACs as "FLOPs": divide ours by 2 to compare.
Element-wise work (norms, activations, softmax, interpolation) is not counted by either.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

from .decoders import conv_flops

FLOPS_CONVENTION = (
    "FLOPs = 2 x MACs (torch.utils.flop_counter convention; MMSegmentation reports MACs = FLOPs / 2)"
)


def _sequential_conv_flops(module: nn.Module, height: int, width: int) -> tuple[int, int, int]:
    """FLOPs of the Conv2d layers of a plain conv stack (in order), with the output size."""
    total = 0
    for layer in module.modules():
        if isinstance(layer, nn.Conv2d):
            height = (height + 2 * layer.padding[0] - layer.kernel_size[0]) // layer.stride[0] + 1
            width = (width + 2 * layer.padding[1] - layer.kernel_size[1]) // layer.stride[1] + 1
            total += conv_flops(layer, height, width)
    return total, height, width


@dataclass
class FlopFormula:
    """Analytic FLOPs of one model at one token grid (h, w), per part."""

    embed: int  # patch embedding / conv stem
    aux_head: int  # one aux head over all N tokens, its convs (+ the Eq. 8 merge when enabled)
    decoder: int
    embed_dim: int
    mlp_hidden: int
    num_prefix_tokens: int

    def block(self, patch_tokens: int) -> int:
        """One timm Block over n = patch_tokens + prefix tokens: qkv, QK^T, AV, proj, fc1, fc2."""
        n, e, hidden = patch_tokens + self.num_prefix_tokens, self.embed_dim, self.mlp_hidden
        linear = 2 * n * e * (3 * e) + 2 * n * e * e + 2 * n * e * hidden * 2
        attention = 2 * n * n * e * 2
        return linear + attention


def flop_formula(model: nn.Module, grid: tuple[int, int]) -> FlopFormula:
    """Analytic per-part FLOPs for ``model`` (a DoViTSegmenter) on an h x w token grid."""
    p = model.patch_size
    height, width = grid[0] * p, grid[1] * p
    num_tokens = grid[0] * grid[1]
    stem = model.vit.patch_embed
    if hasattr(stem, "flops"):  # a pretrained encoder counts its own
        embed = stem.flops(height, width)
    else:
        embed = _sequential_conv_flops(stem, height, width)[0]
    aux = model.aux_heads[0].flops(num_tokens)  # every head has the same kind and size
    if model.config.merge_stopped:
        aux += 2 * num_tokens * model.embed_dim  # the weighted sum in Eq. 8
    decoder = model.decoder.flops(grid)
    block = model.vit.blocks[0]
    return FlopFormula(
        embed=embed,
        aux_head=aux,
        decoder=decoder,
        embed_dim=model.embed_dim,
        mlp_hidden=int(block.mlp.fc1.out_features),
        num_prefix_tokens=model.num_prefix_tokens,
    )


@dataclass
class ForwardFlops:
    """Analytic FLOPs of one image's forward: per group, the backbone (embedding + blocks), the aux heads,
    the decoder and their total; and the dense forward's (all N tokens in every block, no aux heads)."""

    groups: list[int]
    backbone: int
    aux_heads: int
    decoder: int
    total: int
    dense_backbone: int
    dense_total: int


def forward_flops(model: nn.Module, grid: tuple[int, int], group_tokens: list[int],
                  num_aux_heads: int) -> ForwardFlops:
    """Analytic FLOPs of one image's forward given the kept patch tokens per group."""
    formula = flop_formula(model, grid)
    num_tokens = grid[0] * grid[1]
    groups = [
        formula.block(tokens) * (last - first) for tokens, (first, last) in zip(group_tokens,
                                                                                model.group_bounds,
                                                                                strict=False)
    ]
    backbone = formula.embed + sum(groups)
    dense_backbone = formula.embed + formula.block(num_tokens) * len(model.vit.blocks)
    aux = formula.aux_head * num_aux_heads
    return ForwardFlops(groups=groups, backbone=backbone, aux_heads=aux, decoder=formula.decoder,
                        total=backbone + aux + formula.decoder, dense_backbone=dense_backbone,
                        dense_total=dense_backbone + formula.decoder)


# torch 2.14 registers no formula for the CPU flash-attention kernel, so FlopCounterMode would count
# attention as zero on CPU; map it to the generic SDPA formula (passed per counter, not globally).
def _cpu_attention_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(query_shape, key_shape, value_shape)


_CPU_ATTENTION = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_attention_flops}


def count_flops(fn, *args, **kwargs) -> tuple[int, object]:
    """Run fn(*args, **kwargs) under FlopCounterMode; return (measured FLOPs, fn's result)."""
    with FlopCounterMode(display=False, custom_mapping=_CPU_ATTENTION) as counter:
        result = fn(*args, **kwargs)
    return int(counter.get_total_flops()), result
