"""The trace of one image's forward: what each decision did, what each group cost, and when.

Built from the same ``SegmenterOutput`` that training and inference use; the app draws only this.
Arrays are numpy, maps are h x w over the token grid. FLOPs follow ``dovit.core.flops.FLOPS_CONVENTION``.
Per token it also keeps the TOP_K most probable classes of every aux head and of the decoder (the token
inspector's numbers): the decoder's are read at the token's centre pixel (``token_centres``), so they
cost h*w softmaxes, not one per pixel.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from .flops import FLOPS_CONVENTION, forward_flops
from .model import SegmenterOutput
from .token_pass import halting_depth

TOP_K = 3  # classes kept per token for each aux head and the decoder


def class_name(names: list[str], class_id: int) -> str:
    """The name of ``class_id`` in ``names``, or "class N" for an id the names do not cover."""
    return str(names[class_id]) if 0 <= class_id < len(names) else f"class {class_id}"


@dataclass
class DecisionTrace:
    """One decision layer l: confidence q_l, tokens stopped here, cumulative keep mask M_l."""

    layer: int  # 1-based block index after which the decision is taken
    confidence: np.ndarray  # (h, w) float32 in [0, 1]
    stopped_here: np.ndarray  # (h, w) bool: kept before, stopped by this decision
    keep_mask: np.ndarray  # (h, w) bool: M_l (True = keep)
    kept: int  # patch tokens still kept after this decision
    # The aux head's TOP_K most probable classes per token, most probable first (None: not recorded).
    # top_probabilities[..., 0] is ``confidence`` (Eq. 3).
    top_classes: np.ndarray | None = None  # (h, w, k) int64 class ids
    top_probabilities: np.ndarray | None = None  # (h, w, k) float32 softmax probabilities


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
    # The decoder's TOP_K classes per token: its softmax at the token's centre pixel (``token_centres``)
    # of the input-size logits, most probable first (None: not recorded).
    decoder_top_classes: np.ndarray | None = None  # (h, w, k) int64 class ids
    decoder_top_probabilities: np.ndarray | None = None  # (h, w, k) float32
    class_names: list[str] = field(default_factory=list)  # the checkpoint's, indexed by class id

    @property
    def flops_saved(self) -> float:
        """Fraction of the dense forward's FLOPs this forward did not spend (may be < 0 at xi = 1)."""
        return 1.0 - self.flops / self.dense_flops

    @property
    def backbone_flops_saved(self) -> float:
        return 1.0 - self.backbone_flops / self.dense_backbone_flops

    def to_json(self) -> dict:
        """The token pass as plain JSON: grid [rows, cols], decision_layers, confidence (decisions x rows x
        cols, the aux heads' q_l of Eq. 3), halting_group (rows x cols: the group after which each token
        stopped; the number of groups when it ran every block), kept_tokens per group, gflops, dense_gflops,
        xi, and halting_by_class ({class name: tokens stopped after each group, the last = ran every block},
        summing to the grid's tokens; when the decoder's classes were recorded)."""
        return {
            "xi": float(self.xi),
            "grid": [int(v) for v in self.grid],
            "decision_layers": [int(d.layer) for d in self.decisions],
            "confidence": [np.round(d.confidence.astype(np.float64), 5).tolist() for d in self.decisions],
            "halting_group": self.halting_depth.astype(int).tolist(),
            "kept_tokens": [int(g.tokens) for g in self.groups],
            "gflops": self.flops / 1e9,
            "dense_gflops": self.dense_flops / 1e9,
            "flops_convention": self.flops_convention,
            **({"halting_by_class": self.halting_by_class().to_json()}
               if self.decoder_top_classes is not None else {}),
        }

    def halting_by_class(self) -> HaltingByClass:
        """Per class of the final prediction (the decoder's top class at each token's centre), how many of
        its tokens stopped after each group; needs ``decoder_top_classes``."""
        if self.decoder_top_classes is None:
            raise ValueError("this trace has no decoder classes per token (decoder_top_classes is None)")
        classes = self.decoder_top_classes[..., 0]
        num_classes = max(len(self.class_names), int(classes.max(initial=-1)) + 1)
        names = [class_name(self.class_names, c) for c in range(num_classes)]
        counts = halting_counts(self.halting_depth, classes, num_classes, len(self.groups))
        return HaltingByClass(names, counts)

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


@dataclass
class HaltingByClass:
    """Which classes stop early: counts[c, g - 1] = tokens of class c (the final prediction's class at the
    token) that stopped after group B_g; the last column (g = D + 1) = tokens that ran every block. The
    counts sum to the grid's tokens."""

    class_names: list[str]  # one per row of counts
    counts: np.ndarray  # (C, D + 1) int64

    def to_json(self) -> dict[str, list[int]]:
        """{class name: [tokens stopped after B_1, ..., after B_D, ran all blocks]} for every class."""
        return {name: [int(v) for v in row] for name, row in zip(self.class_names, self.counts, strict=True)}


def halting_counts(depth: np.ndarray, classes: np.ndarray, num_classes: int, num_groups: int) -> np.ndarray:
    """(h, w) halting group in 1..num_groups and (h, w) class ids in 0..num_classes-1 -> (num_classes,
    num_groups) int64 token counts, one joint histogram."""
    cells = classes.astype(np.int64).ravel() * num_groups + (depth.astype(np.int64).ravel() - 1)
    return np.bincount(cells, minlength=num_classes * num_groups).reshape(num_classes, num_groups)


def token_centres(grid: tuple[int, int], size: tuple[int, int], patch: int) -> tuple[np.ndarray, np.ndarray]:
    """Centre pixel of every token of an image of ``size`` = (height, width) cut into ``patch``-pixel
    tokens on a ``grid`` = (h, w): rows (h,) and columns (w,) int64. A token the bottom/right edge cuts
    short (the model pads the image there) has the centre of its part inside the image."""
    def centres(count: int, length: int) -> np.ndarray:
        starts = np.arange(count) * patch
        ends = np.minimum(starts + patch, length)
        return np.minimum(starts + (ends - starts) // 2, length - 1).astype(np.int64)
    return centres(grid[0], size[0]), centres(grid[1], size[1])


def top_classes(logits: torch.Tensor, k: int = TOP_K) -> tuple[np.ndarray, np.ndarray]:
    """(C, h, w) logits -> the k most probable classes (h, w, k) int64 and their softmax probabilities
    (h, w, k) float32, most probable first (k is cut to C)."""
    probabilities, classes = logits.float().softmax(dim=0).topk(min(k, logits.shape[0]), dim=0)
    return (classes.permute(1, 2, 0).cpu().numpy().astype(np.int64),
            probabilities.permute(1, 2, 0).cpu().numpy().astype(np.float32))


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
            top_classes=top[0],
            top_probabilities=top[1],
        )
        for layer, confidence, stopped, keep, top in zip(
            model.decision_layers, output.confidence, output.stopped_now, output.keep_masks,
            (top_classes(aux[index].detach()) for aux in output.aux_logits), strict=False,
        )
    ]
    rows, cols = token_centres((h, w), tuple(output.logits.shape[-2:]), model.patch_size)
    logits = output.logits[index].detach()
    centre_logits = logits[:, torch.as_tensor(rows, device=logits.device)[:, None],
                           torch.as_tensor(cols, device=logits.device)[None, :]]
    decoder_classes, decoder_probabilities = top_classes(centre_logits)
    if output.keep_masks:
        depth = as_map(halting_depth(output.keep_masks))
    else:  # dense forward: no decision ran, every token went through every block
        depth = np.full((h, w), len(model.decision_layers) + 1, dtype=np.int64)
    groups = [
        GroupTrace(blocks=(first + 1, last), tokens=tokens, flops=group_flops)
        for (first, last), tokens, group_flops in zip(model.group_bounds, group_tokens, flops.groups,
                                                      strict=False)
    ]
    return Trace(
        xi=output.xi,
        grid=(h, w),
        num_tokens=num_tokens,
        decisions=decisions,
        groups=groups,
        halting_depth=depth,
        flops=flops.total,
        dense_flops=flops.dense_total,
        backbone_flops=flops.backbone,
        dense_backbone_flops=flops.dense_backbone,
        aux_head_flops=flops.aux_heads,
        decoder_flops=flops.decoder,
        timings_ms=dict(output.timings_ms),
        decoder_top_classes=decoder_classes,
        decoder_top_probabilities=decoder_probabilities,
        class_names=list(model.config.class_names),
    )
