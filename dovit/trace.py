"""The trace of one image's forward: what each decision did, what each group cost, and when.

Built from the same ``SegmenterOutput`` that training and inference use; the app draws only this.
Arrays are numpy, maps are h x w over the token grid. FLOPs follow ``dovit.flops.FLOPS_CONVENTION``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from torch import nn

from .flops import FLOPS_CONVENTION, forward_flops
from .model import SegmenterOutput
from .token_pass import halting_depth


@dataclass
class DecisionTrace:
    """One decision layer l: confidence q_l, tokens stopped here, cumulative keep mask M_l."""

    layer: int  # 1-based block index after which the decision is taken
    confidence: np.ndarray  # (h, w) float32 in [0, 1]
    stopped_here: np.ndarray  # (h, w) bool: kept before, stopped by this decision
    keep_mask: np.ndarray  # (h, w) bool: M_l (True = keep)
    kept: int  # patch tokens still kept after this decision


@dataclass
class GroupTrace:
    """One group B_g of blocks: how many patch tokens ran through it and what that cost."""

    blocks: tuple[int, int]  # 1-based inclusive block range
    tokens: int  # patch tokens processed (the class token runs too and is counted in flops)
    flops: int


@dataclass
class Trace:
    xi: float
    grid: tuple[int, int]
    num_tokens: int
    decisions: list[DecisionTrace]
    groups: list[GroupTrace]
    halting_depth: np.ndarray  # (h, w) int: group after which a token stopped; D+1 = ran all blocks
    flops: int  # this forward, everything computed (backbone + aux heads + decoder)
    dense_flops: int  # the dense forward of the same input (no token pass, no aux heads)
    backbone_flops: int  # patch embedding + transformer blocks of this forward
    dense_backbone_flops: int
    aux_head_flops: int
    decoder_flops: int
    timings_ms: dict[str, float] = field(default_factory=dict)  # wall time per stage
    flops_convention: str = FLOPS_CONVENTION

    @property
    def flops_saved(self) -> float:
        """Fraction of the dense forward's FLOPs this forward did not spend (may be < 0 at xi = 1)."""
        return 1.0 - self.flops / self.dense_flops

    @property
    def backbone_flops_saved(self) -> float:
        return 1.0 - self.backbone_flops / self.dense_backbone_flops

    def summary(self) -> dict:
        """A JSON-friendly summary (no maps)."""
        return {
            "xi": self.xi,
            "gflops": self.flops / 1e9,
            "dense_gflops": self.dense_flops / 1e9,
            "backbone_gflops": self.backbone_flops / 1e9,
            "dense_backbone_gflops": self.dense_backbone_flops / 1e9,
            "kept_tokens": [g.tokens for g in self.groups],
            "num_tokens": self.num_tokens,
            "timings_ms": dict(self.timings_ms),
            "flops_convention": self.flops_convention,
        }


def build_trace(model: nn.Module, output: SegmenterOutput, index: int = 0) -> Trace:
    """The Trace of image ``index`` of a batched forward ``output`` of ``model``."""
    h, w = output.grid
    num_tokens = h * w
    group_tokens = [int(v) for v in output.group_tokens[index].tolist()]
    flops = forward_flops(model, output.grid, group_tokens, len(output.aux_logits))

    def as_map(tensor) -> np.ndarray:
        return tensor[index].detach().cpu().numpy().reshape(h, w)

    decisions = [
        DecisionTrace(
            layer=layer,
            confidence=as_map(confidence).astype(np.float32),
            stopped_here=as_map(stopped),
            keep_mask=as_map(keep),
            kept=int(keep[index].sum()),
        )
        for layer, confidence, stopped, keep in zip(
            model.decision_layers, output.confidence, output.stopped_now, output.keep_masks
        )
    ]
    if output.keep_masks:
        depth = as_map(halting_depth(output.keep_masks))
    else:  # dense forward: no decision ran, every token went through every block
        depth = np.full((h, w), len(model.decision_layers) + 1, dtype=np.int64)
    groups = [
        GroupTrace(blocks=(first + 1, last), tokens=tokens, flops=group_flops)
        for (first, last), tokens, group_flops in zip(model.group_bounds, group_tokens, flops["groups"])
    ]
    return Trace(
        xi=output.xi,
        grid=(h, w),
        num_tokens=num_tokens,
        decisions=decisions,
        groups=groups,
        halting_depth=depth,
        flops=flops["total"],
        dense_flops=flops["dense_total"],
        backbone_flops=flops["backbone"],
        dense_backbone_flops=flops["dense_backbone"],
        aux_head_flops=flops["aux_heads"],
        decoder_flops=flops["decoder"],
        timings_ms=dict(output.timings_ms),
    )
