"""The token-pass mechanics of DoViT as small pure tensor functions (paper Eq. 2-8).

Shapes: B images, N patch tokens (N = h*w), E channels, C classes, K kept tokens.
Masks are boolean, True = keep (the paper's 1), False = stop (the paper's 0).
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch


def check_xi(xi: float) -> float:
    """The token-pass threshold xi of Eq. 4 as a float in [0, 1], or a ValueError that says what was wrong
    (the one check every entry point uses: model, Predictor, command lines, the app)."""
    try:
        value = float(xi)
    except (TypeError, ValueError):
        raise ValueError(f"xi must be a number in [0, 1], got {xi!r}") from None
    if not math.isfinite(value) or not 0.0 <= value <= 1.0:
        raise ValueError(f"xi must be a number in [0, 1], got {xi!r}")
    return value


def token_confidence(aux_logits: torch.Tensor) -> torch.Tensor:
    """Eq. 2-3: q = max_c softmax(H_l(f_l)). aux_logits (B, N, C) -> confidence (B, N) in [0, 1]."""
    return aux_logits.float().softmax(dim=-1).amax(dim=-1)


def decide_keep(confidence: torch.Tensor, xi: float, previous_keep: torch.Tensor) -> torch.Tensor:
    """Eq. 4-5: keep a token while q <= xi, and only if it was kept before (stopped tokens never return).

    confidence (B, N) float, previous_keep (B, N) bool -> keep_mask (B, N) bool.
    """
    return previous_keep & ~(confidence > xi)


def equalise_keep(confidence: torch.Tensor, keep_mask: torch.Tensor,
                  previous_keep: torch.Tensor) -> torch.Tensor:
    """Training with batch > 1: every image keeps K = round(mean kept count) tokens.

    Each image keeps its K least confident tokens among those it kept before (the paper's equalised
    batches), so the kept sequences have one length and run as one batched tensor. K never exceeds
    the previous (already equal) count, so stopped tokens still never return.
    """
    kept = int(torch.round(keep_mask.sum(dim=1).float().mean()).item())
    order_key = confidence.masked_fill(~previous_keep, float("inf"))
    least_confident = order_key.argsort(dim=1, stable=True)[:, :kept]
    equal_mask = torch.zeros_like(keep_mask)
    equal_mask.scatter_(1, least_confident, True)
    return equal_mask


# A policy's choice at one decision: (decision index 0..D-1, confidence q_l (B, N), aux_logits (B, C, h, w),
# previous keep M_{l-1} (B, N) bool) -> keep mask (B, N) bool; ANDed with M_{l-1} by ``Policy``.
KeepDecider = Callable[[int, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


class Decider:
    """Which tokens keep running at each decision: the one type ``DoViTSegmenter.forward_from`` asks.

    ``decider(decision, confidence (B, N), aux_logits (B, C, h, w), previous_keep (B, N))`` -> M_l (B, N)
    bool, never keeping a token stopped before. ``Threshold`` is Eq. 4-5; ``Forced`` and ``Policy`` replace
    it.
    """

    def __call__(self, decision: int, confidence: torch.Tensor, logits: torch.Tensor,
                 previous_keep: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


@dataclass(frozen=True)
class Threshold(Decider):
    """Eq. 4-5 at ``xi``; ``equalise``: the paper's equal kept counts for training batches."""

    xi: float
    equalise: bool = False

    def __call__(self, decision, confidence, logits, previous_keep):
        keep = decide_keep(confidence, self.xi, previous_keep)
        if self.equalise and previous_keep.shape[0] > 1:
            keep = equalise_keep(confidence, keep, previous_keep)
        return keep


@dataclass(frozen=True)
class Forced(Decider):
    """Fixed masks, one (B, N) per decision (the benchmark's kept fractions); the aux heads still run."""

    masks: Sequence[torch.Tensor]

    def __call__(self, decision, confidence, logits, previous_keep):
        return previous_keep & self.masks[decision]


@dataclass(frozen=True)
class Policy(Decider):
    """A stopping policy's ``KeepDecider`` (``dovit.core.policies``) in place of the threshold."""

    choose: KeepDecider

    def __call__(self, decision, confidence, logits, previous_keep):
        return previous_keep & self.choose(decision, confidence, logits, previous_keep)


def padded_kept_indices(keep_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The index map I for a batch whose images keep different numbers of tokens, padded to the largest.

    keep_mask (B, N) -> indices (B, K) int64 and valid (B, K) bool, K = the largest kept count. Row b lists
    its K_b kept positions in ascending order (valid), then, as padding, its first K - K_b stopped
    positions (not valid). Padding points at real, distinct tokens, so the padded sequence holds finite
    values and a scatter of it writes no position twice.
    """
    counts = keep_mask.sum(dim=1)
    k = int(counts.max().item()) if counts.numel() else 0
    # Stable sort of ~mask puts kept positions first, in their original order, then the stopped ones.
    indices = (~keep_mask).to(torch.uint8).argsort(dim=1, stable=True)[:, :k]
    valid = torch.arange(k, device=keep_mask.device) < counts.unsqueeze(1)
    return indices, valid


def key_padding_mask(valid: torch.Tensor, num_prefix_tokens: int) -> torch.Tensor:
    """The attention mask that makes a padded sequence attend only to its own real tokens.

    valid (B, K) bool from ``padded_kept_indices`` -> (B, 1, 1, P + K) bool, True = attend, for timm's
    ``Block.forward(x, attn_mask=...)`` (passed on to ``F.scaled_dot_product_attention``, broadcast over
    heads and queries). The P prefix tokens are always attended, so no query row is fully masked; the
    outputs of padded query rows are meaningless and must be discarded (``scatter_tokens(..., valid)``).
    """
    prefix = torch.ones(valid.shape[0], num_prefix_tokens, dtype=torch.bool, device=valid.device)
    return torch.cat([prefix, valid], dim=1)[:, None, None, :]


def pack_by_kept_count(counts: list[int], num_prefix_tokens: int, embed_dim: int,
                       overhead_tokens: float) -> list[list[int]]:
    """Split a batch into sub-batches that each run as one padded forward, at the least modelled cost.

    counts: kept patch tokens per image (B). A sub-batch of n images padded to L = P + its largest count
    costs ``overhead_tokens + n * L * (1 + L / (6 E))`` token-units: per block and token, the linear
    layers cost 24 E^2 FLOPs and attention 4 L E, and ``overhead_tokens`` prices one more forward (kernel
    launches, Python) in tokens. Images are sorted by count (descending) and split into contiguous runs
    by dynamic programming, O(B^2). Returns lists of batch indices, each ascending: one list is the whole
    batch padded; singletons are image by image (what wins on a CPU when counts are far apart). Equal
    counts always share a sub-batch (no padding, one forward fewer).
    """
    if overhead_tokens == float("inf") or len(counts) <= 1:
        return [list(range(len(counts)))]
    order = sorted(range(len(counts)), key=lambda index: -counts[index])
    best = [0.0] + [float("inf")] * len(order)
    cut = [0] * (len(order) + 1)
    for end in range(1, len(order) + 1):
        for start in range(end):  # images order[start:end] padded to the count of order[start]
            length = num_prefix_tokens + counts[order[start]]
            cost = best[start] + overhead_tokens + (end - start) * length * (1.0 + length / (6.0 * embed_dim))
            if cost < best[end]:
                best[end], cut[end] = cost, start
    groups, end = [], len(order)
    while end > 0:
        groups.append(sorted(order[cut[end] : end]))
        end = cut[end]
    return groups[::-1]


def gather_tokens(tokens: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """G(T, M): tokens (B, N, E), indices (B, K) -> compact kept tokens (B, K, E)."""
    return tokens.gather(1, indices.unsqueeze(-1).expand(-1, -1, tokens.shape[-1]))


def scatter_tokens(tokens: torch.Tensor, kept: torch.Tensor, indices: torch.Tensor,
                   valid: torch.Tensor | None = None) -> torch.Tensor:
    """R(T̂, I): put updated kept tokens (B, K, E) back at their positions in tokens (B, N, E).

    Stopped tokens are carried unchanged. valid (B, K) bool, for padded indices: only valid entries of
    ``kept`` are written; padding positions keep their value in ``tokens``. Out of place, so autograd
    sees both paths.
    """
    if valid is not None:
        kept = torch.where(valid.unsqueeze(-1), kept, gather_tokens(tokens, indices))
    return tokens.scatter(1, indices.unsqueeze(-1).expand(-1, -1, tokens.shape[-1]), kept)


def merge_stopped_into_class_token(
    class_token: torch.Tensor, tokens: torch.Tensor, stopped_now: torch.Tensor
) -> torch.Tensor:
    """Eq. 8, as we read it: T_0 <- 1/2 * T_0 + mean over S_l of the tokens stopped at this decision.

    The printed formula also sums over the embedding axis; we take the per-channel mean over the
    newly stopped set S_l (as the method summary prescribes). Images with S_l empty keep T_0 unchanged,
    which is what makes xi = 1 reproduce the dense model exactly.
    class_token (B, 1, E), tokens (B, N, E), stopped_now (B, N) bool -> class_token (B, 1, E).
    """
    weights = stopped_now.to(tokens.dtype).unsqueeze(1)  # (B, 1, N)
    count = weights.sum(dim=2, keepdim=True)  # (B, 1, 1) = |S_l|
    # (B, 1, E); bmm: einsum's overhead is not needed
    mean_stopped = torch.bmm(weights, tokens) / count.clamp(min=1.0)
    merged = 0.5 * class_token + mean_stopped
    return torch.where(count > 0, merged, class_token)


def halting_depth(keep_masks: list[torch.Tensor]) -> torch.Tensor:
    """Group after which each token stopped: 1..D for a stop at decision 1..D, D+1 for never stopped.

    keep_masks: D cumulative masks (B, N) -> (B, N) int64.
    """
    depth = torch.full_like(keep_masks[0], len(keep_masks) + 1, dtype=torch.int64)
    for decision in reversed(range(len(keep_masks))):
        depth = torch.where(keep_masks[decision], depth, torch.full_like(depth, decision + 1))
    return depth
