"""Stopping policies: which tokens stop at each decision layer, compared at matched FLOPs (issue 13). Notes
and measurements: docs/library_notes.md.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from . import token_pass as tp
from .flops import forward_flops
from .model import KeepDecider, SegmenterOutput
from .predictor import Predictor
from .preprocess import class_mask
from .stopwatch import Stopwatch
from .token_grid import token_index_map, token_majority
from .token_pass import Policy
from .trace import Trace, build_trace

DTOP_K = 5  # DToP keeps the k = 5 most confident tokens of each class running
SEARCH_TOLERANCE = 0.005  # a search stops within 0.5 % of the budget's FLOPs (the target is 2 %)
BUDGET_TOLERANCE = 0.02  # what counts as "at the budget" (issue 13)
SEARCH_STEPS = 14  # forwards per forward-searched policy and budget, at most (besides the cheap u = 0 end)


@dataclass
class PolicyResult:
    """One policy's forward on one image at one FLOPs budget.

    mask (H, W) int64 class ids at the input image's resolution; halting_depth (h, w) int64 over the token
    grid: the group after which each token stopped (D + 1 = ran all blocks), as ``Trace.halting_depth``.
    gflops: this forward's ``Trace.flops`` / 1e9; dense_gflops: ``Trace.dense_flops`` / 1e9; budget_gflops:
    budget x dense_gflops. latency_ms: measured wall time of the xi-independent prefix (once per image)
    plus this policy's ``forward_from`` and mask. agreement: fraction of pixels whose class equals the
    dense model's. parameter: the knob the budget search chose (ξ for confidence, dtop and random — the ξ
    whose counts random copies —, the keep ratio r for topk, the priority threshold τ in [0, 2] for oracle,
    the cut for shallow: tokens stop after decision ``cut``, D + 1 = dense).
    """

    name: str
    mask: np.ndarray
    halting_depth: np.ndarray
    gflops: float
    dense_gflops: float
    budget_gflops: float
    latency_ms: float
    agreement: float
    parameter: float
    note: str = ""
    kept_tokens: tuple[int, ...] = ()  # patch tokens that ran through each group B_1..B_{D+1}
    trace: Trace | None = None

    @property
    def budget_ratio(self) -> float:
        """gflops / budget_gflops (1 = exactly at the budget)."""
        return self.gflops / self.budget_gflops


# ------------------------------------------------------------------ keep rules (pure)
def confidence_keep(confidence: torch.Tensor, previous_keep: torch.Tensor, xi: float) -> torch.Tensor:
    """DoViT, Eq. 4-5: keep while q <= ξ. confidence (B, N), previous_keep (B, N) bool -> (B, N) bool."""
    return tp.decide_keep(confidence, xi, previous_keep)


def least_confident_keep(score: torch.Tensor, previous_keep: torch.Tensor,
                         counts: torch.Tensor) -> torch.Tensor:
    """Keep, per image b, the counts[b] previously kept tokens of lowest score (the highest stop first).

    score (B, N) float, previous_keep (B, N) bool, counts (B,) int (clamped to the previous count) ->
    (B, N) bool. Ties go to the lower token index.
    """
    order = score.masked_fill(~previous_keep, float("inf")).argsort(dim=1, stable=True)
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(order.shape[1], device=order.device).expand_as(order))
    return previous_keep & (rank < counts.to(rank.device).unsqueeze(1))


def topk_counts(kept: torch.Tensor | int, ratio: float) -> torch.Tensor | int:
    """round(ratio x kept), halves up: the tokens ``topk`` keeps of ``kept`` (int or int tensor)."""
    if isinstance(kept, torch.Tensor):
        return torch.floor(kept.double() * ratio + 0.5).long()
    return int(np.floor(kept * ratio + 0.5))


def topk_keep(confidence: torch.Tensor, previous_keep: torch.Tensor, ratio: float) -> torch.Tensor:
    """Fixed ratio: keep round(r x previously kept) tokens per image, the most confident stop first."""
    return least_confident_keep(confidence, previous_keep, topk_counts(previous_keep.sum(dim=1), ratio))


def random_keep(previous_keep: torch.Tensor, stop_counts: torch.Tensor,
                generator: torch.Generator) -> torch.Tensor:
    """Stop stop_counts[b] of image b's previously kept tokens, chosen uniformly at random by ``generator``.

    previous_keep (B, N) bool, stop_counts (B,) int -> (B, N) bool.
    """
    score = torch.rand(previous_keep.shape, generator=generator).to(previous_keep.device)
    kept = previous_keep.sum(dim=1) - stop_counts.to(previous_keep.device)
    return least_confident_keep(score, previous_keep, kept)


def dtop_keep(confidence: torch.Tensor, aux_class: torch.Tensor, previous_keep: torch.Tensor, xi: float,
              k: int = DTOP_K) -> torch.Tensor:
    """DToP: stop tokens with q > ξ, except the k most confident previously kept tokens of each class.

    confidence (B, N), aux_class (B, N) int (argmax of the aux head), previous_keep (B, N) bool -> (B, N)
    bool. Every class present among the previously kept tokens keeps min(k, its count) of them.
    """
    keep = confidence_keep(confidence, previous_keep, xi)
    if k <= 0:
        return keep
    for value in aux_class[previous_keep].unique().tolist():
        member = previous_keep & (aux_class == value)
        top = confidence.masked_fill(~member, -1.0).topk(min(k, confidence.shape[1]), dim=1)
        keep.scatter_(1, top.indices, top.values.ge(0.0) | keep.gather(1, top.indices))
    return keep


def oracle_priority(confidence: torch.Tensor, aux_class: torch.Tensor,
                    dense_class: torch.Tensor) -> torch.Tensor:
    """q + 1 where the aux class equals the dense model's token class, else q: (B, N) in [0, 2].

    A threshold τ > 1 on it stops only tokens the aux head already gets right (most confident first);
    τ <= 1 stops all of those and the others with q > τ. dense_class (B, N) int (-1: no class).
    """
    return confidence + (aux_class == dense_class).to(confidence.dtype)


def oracle_keep(confidence: torch.Tensor, aux_class: torch.Tensor, dense_class: torch.Tensor,
                previous_keep: torch.Tensor, threshold: float) -> torch.Tensor:
    """Stop the tokens whose ``oracle_priority`` exceeds ``threshold`` (τ in [0, 2])."""
    return previous_keep & ~(oracle_priority(confidence, aux_class, dense_class) > threshold)


def shallow_keep(decision: int, previous_keep: torch.Tensor, cut: int) -> torch.Tensor:
    """Every token stops at decision ``cut`` (1-based); decision is 0-based as in ``KeepDecider``."""
    return previous_keep & (decision + 1 < cut)


def make_decider(policy: str, parameter: float, *, dense_class: torch.Tensor | None = None,
                 stop_counts: list[torch.Tensor] | None = None, seed: int = 0,
                 k: int = DTOP_K) -> KeepDecider:
    """The ``KeepDecider`` of ``policy`` at ``parameter`` (see ``PolicyResult.parameter``).

    oracle needs dense_class (B, N); random needs stop_counts (D tensors (B,): tokens to stop at each
    decision) and seeds a fresh generator per decider, so the same seed stops the same tokens.
    """
    if policy not in DECIDER_FACTORIES:
        raise ValueError(f"unknown policy {policy!r}; choose from {', '.join(POLICIES)}")
    return DECIDER_FACTORIES[policy](parameter, dense_class=dense_class, stop_counts=stop_counts, seed=seed,
                                     k=k)


def _oracle(parameter: float, dense_class: torch.Tensor | None, **_) -> KeepDecider:
    if dense_class is None:
        raise ValueError("the oracle policy needs the dense model's token classes")
    return lambda decision, confidence, logits, keep: oracle_keep(confidence, _aux_class(logits), dense_class,
                                                                  keep, parameter)


def _random(parameter: float, stop_counts: list[torch.Tensor] | None, seed: int, **_) -> KeepDecider:
    if stop_counts is None:
        raise ValueError("the random policy needs the counts to stop at each decision")
    generator = torch.Generator().manual_seed(int(seed))
    return lambda decision, confidence, logits, keep: random_keep(keep, stop_counts[decision], generator)


# policy name -> factory(parameter, dense_class=, stop_counts=, seed=, k=) of its KeepDecider; its order is
# POLICIES' (the tables' and the app's)
DECIDER_FACTORIES: dict[str, Callable[..., KeepDecider]] = {
    "confidence": lambda parameter, **_: (
        lambda decision, confidence, logits, keep: confidence_keep(confidence, keep, parameter)),
    "random": _random,
    "topk": lambda parameter, **_: (
        lambda decision, confidence, logits, keep: topk_keep(confidence, keep, parameter)),
    "dtop": lambda parameter, k, **_: (
        lambda decision, confidence, logits, keep: dtop_keep(confidence, _aux_class(logits), keep, parameter,
                                                             k)),
    "oracle": _oracle,
    "shallow": lambda parameter, **_: (
        lambda decision, confidence, logits, keep: shallow_keep(decision, keep, int(parameter))),
}
POLICIES: tuple[str, ...] = tuple(DECIDER_FACTORIES)


def _aux_class(aux_logits: torch.Tensor) -> torch.Tensor:
    """(B, C, h, w) -> (B, N) argmax class."""
    return aux_logits.argmax(dim=1).flatten(1)


# ------------------------------------------------------------------ budget search (pure)
def search_budget(flops_at: Callable[[float], float], target: float, tolerance: float = SEARCH_TOLERANCE,
                  max_steps: int = SEARCH_STEPS, ends: tuple[float | None, float | None] = (None, None)
                  ) -> tuple[float, float]:
    """Find u in [0, 1] with flops_at(u) within ``tolerance`` (relative) of ``target``; (u, flops_at(u)).

    flops_at should rise with u (not strictly: a step function, possibly with small dips). Illinois regula
    falsi on a bracket [lo, hi] with flops_at(lo) <= target <= flops_at(hi); ends: known flops_at(0) and
    flops_at(1) (None: evaluated). Returns the evaluated u closest to the target: an end when the target
    lies outside [flops_at(0), flops_at(1)], the best found after ``max_steps`` otherwise.
    """
    low, high = 0.0, 1.0
    f_low = flops_at(low) if ends[0] is None else ends[0]
    f_high = flops_at(high) if ends[1] is None else ends[1]
    best = min(((low, f_low), (high, f_high)), key=lambda point: abs(point[1] - target))
    if target <= f_low or target >= f_high or abs(best[1] - target) <= tolerance * target:
        return best
    side = 0  # which end was kept last step: Illinois halves a twice-kept end's residual
    g_low, g_high = f_low - target, f_high - target
    for _ in range(max_steps):
        u = high - g_high * (high - low) / (g_high - g_low)
        u = min(max(u, low + 1e-9 * (high - low)), high - 1e-9 * (high - low))
        flops = flops_at(u)
        if abs(flops - target) < abs(best[1] - target):
            best = (u, flops)
        if abs(flops - target) <= tolerance * target or high - low < 1e-9:
            break
        if flops < target:
            low, g_low = u, flops - target
            if side == -1:
                g_high /= 2.0
            side = -1
        else:
            high, g_high = u, flops - target
            if side == 1:
                g_low /= 2.0
            side = 1
    return best


def quantile_map(values: torch.Tensor, top: float) -> Callable[[float], float]:
    """u in [0, 1] -> a threshold such that about a fraction u of ``values`` lies at or below it.

    values: the first decision's scores of one image (N,); u = 0 gives 0 (stop all), u = 1 gives ``top``
    (no score exceeds it: stop none). Searching on u instead of the threshold keeps FLOPs about linear
    in the search variable, although confidences crowd near 1.
    """
    points = np.concatenate([[0.0], np.sort(values.detach().double().cpu().numpy().reshape(-1)), [top]])
    grid = np.linspace(0.0, 1.0, len(points))
    return lambda u: float(np.interp(u, grid, points))


# ------------------------------------------------------------------ one image, many policies and budgets
@dataclass
class _Choice:
    parameter: float
    dense: bool  # nothing stops: the plain dense forward (no aux heads)


class PolicyRunner:
    """One RGB image's xi-independent prefix, dense answer and searches, shared by all policies and budgets.

    >>> runner = PolicyRunner(predictor, image)       # image: (H, W, 3) uint8 RGB
    >>> results = [runner.run(name, 0.5) for name in POLICIES]

    The image is prepared once (``Predictor.prepare``: preprocessing, embedding, B_1, the dense answer) and
    every policy's forward starts from it through ``Predictor.run`` with the policy's keep decider; the
    prefix's measured time is added to every policy's latency, as ``Predictor.predict`` does. The
    predictor's own ``set_image`` cache is neither used nor changed.
    """

    @torch.inference_mode()
    def __init__(self, predictor: Predictor, image: np.ndarray, seed: int = 0, dtop_k: int = DTOP_K,
                 tolerance: float = SEARCH_TOLERANCE, size: tuple[int, int] | None = None) -> None:
        self.predictor, self.model = predictor, predictor.model
        self.seed, self.dtop_k, self.tolerance = int(seed), int(dtop_k), tolerance
        self.image = predictor.prepare(image, size)  # size: the working (h, w), default the image's aspect
        self.image_size = self.image.original_size
        self.prefix_ms = self.image.prefix_ms
        dense = self.image.dense
        self.dense_mask = self.image.dense_mask
        self.dense_latency_ms = self.image.dense_latency_ms
        self.dense_trace = build_trace(self.model, dense)
        self.grid = dense.grid
        self.num_tokens = self.grid[0] * self.grid[1]
        self.num_decisions = len(self.model.decision_layers)
        working_mask = class_mask(dense.logits)
        token_index = token_index_map(self.image.working_size, self.image.working_size, self.grid,
                                      self.model.patch_size)
        majority = token_majority(working_mask, token_index, self.num_tokens, self.model.config.num_classes)
        self.dense_class = torch.from_numpy(majority).to(dense.logits.device).unsqueeze(0)  # (1, N)
        # The first decision's scores depend on the prefix only: they map a search variable to thresholds.
        # At xi = 0 every token stops there, so this forward costs the first aux head and the decoder.
        first_logits = predictor.run(self.image, 0.0).aux_logits[0]
        first_confidence = tp.token_confidence(first_logits.flatten(2).transpose(1, 2))[0]
        first_priority = oracle_priority(first_confidence, _aux_class(first_logits)[0], self.dense_class[0])
        # first_scores: per threshold policy, the first decision's scores (N,) and the threshold that stops
        # none
        self.first_scores = {"confidence": (first_confidence, 1.0), "dtop": (first_confidence, 1.0),
                             "oracle": (first_priority, 2.0)}
        self._threshold_of = {name: quantile_map(*scores) for name, scores in self.first_scores.items()}
        self._choices: dict[tuple[str, float], _Choice] = {}
        self._flops_seen: dict[tuple[str, float], float] = {}

    # ---------------------------------------------------------- FLOPs
    @property
    def dense_flops(self) -> int:
        return self.dense_trace.dense_flops

    def flops_of_counts(self, group_tokens: Sequence[int]) -> int:
        """``Trace.flops`` of a token-pass forward (all D aux heads run) with these kept counts per group."""
        return int(forward_flops(self.model, self.grid, list(group_tokens), self.num_decisions).total)

    def keep_all_flops(self) -> int:
        """``Trace.flops`` of a token-pass forward that stops nothing (the dense work plus the aux heads)."""
        return self.flops_of_counts([self.num_tokens] * (self.num_decisions + 1))

    # ---------------------------------------------------------- running
    def _decider(self, policy: str, parameter: float, stop_counts: list[torch.Tensor]
                 | None = None) -> KeepDecider:
        return make_decider(policy, parameter, dense_class=self.dense_class, stop_counts=stop_counts,
                            seed=self.seed, k=self.dtop_k)

    @torch.inference_mode()
    def forward(self, policy: str, parameter: float, stop_counts: list[torch.Tensor] | None = None
                ) -> SegmenterOutput:
        """One token-pass forward of ``policy`` at ``parameter`` from the cached prefix."""
        return self.predictor.run(self.image, _trace_xi(policy, parameter),
                                  decider=Policy(self._decider(policy, parameter, stop_counts)))

    def measured_flops(self, policy: str, parameter: float) -> float:
        """FLOPs of a forward at ``parameter``, remembered (every budget's search starts at the same u =
        0)."""
        key = (policy, float(parameter))
        if key not in self._flops_seen:
            output = self.forward(policy, parameter)
            self._flops_seen[key] = float(self.flops_of_counts(output.group_tokens[0].tolist()))
        return self._flops_seen[key]

    def choose(self, policy: str, budget: float) -> _Choice:
        """The policy's parameter at ``budget`` (a fraction of the dense FLOPs), searched once and
        remembered."""
        if policy == "random":  # random stops what confidence stops at this budget, so it shares its search
            policy = "confidence"
        key = (policy, float(budget))
        if key not in self._choices:
            self._choices[key] = self._search(policy, float(budget) * self.dense_flops)
        return self._choices[key]

    def _search(self, policy: str, target: float) -> _Choice:
        n, d = self.num_tokens, self.num_decisions
        if abs(self.dense_flops - target) <= self.tolerance * target:
            return _Choice(_KEEP_ALL[policy](d), dense=True)
        if policy == "shallow":
            cuts = {cut: self.flops_of_counts([n] * cut + [0] * (d + 1 - cut)) for cut in range(1, d + 1)}
            cut = min(cuts, key=lambda c: abs(cuts[c] - target))
            dense_closer = abs(self.dense_flops - target) < abs(cuts[cut] - target)
            return _Choice(float(d + 1), dense=True) if dense_closer else _Choice(float(cut), dense=False)
        if policy == "topk":
            def flops_at(ratio: float) -> float:
                counts = [n]
                for _ in range(d):
                    counts.append(topk_counts(counts[-1], ratio))
                return float(self.flops_of_counts(counts))
            ratio, flops = search_budget(flops_at, target, self.tolerance / 10, max_steps=60)
            return self._or_dense(policy, ratio, flops, target)
        threshold_of = self._threshold_of[policy]
        u, flops = search_budget(lambda u: self.measured_flops(policy, threshold_of(u)), target,
                                 self.tolerance,
                                 ends=(None, float(self.keep_all_flops())))
        return self._or_dense(policy, threshold_of(u), flops, target)

    def _or_dense(self, policy: str, parameter: float, flops: float, target: float) -> _Choice:
        if abs(self.dense_flops - target) < abs(flops - target):
            return _Choice(_KEEP_ALL[policy](self.num_decisions), dense=True)
        return _Choice(parameter, dense=False)

    def run(self, policy: str, budget: float) -> PolicyResult:
        """``policy`` on this image at ``budget`` in (0, 1] of the dense FLOPs: search, then one timed
        forward."""
        budget = check_budget(budget)
        check_policies([policy])
        return self._run(policy, self.choose(policy, budget), budget, per_image=True)

    def run_at(self, policy: str, parameter: float, budget: float) -> PolicyResult:
        """``policy`` at a given knob value (chosen for a whole image set, see ``dovit.compare``); budget is
        only recorded. A parameter that stops nothing (ξ = 1, r = 1, τ = 2, cut D + 1) runs the dense
        forward."""
        check_policies([policy])
        dense = float(parameter) >= _KEEP_ALL[policy](self.num_decisions)
        return self._run(policy, _Choice(float(parameter), dense=dense), check_budget(budget),
                         per_image=False)

    @torch.inference_mode()
    def _run(self, policy: str, choice: _Choice, budget: float, per_image: bool) -> PolicyResult:
        stop_counts = None
        if policy == "random" and not choice.dense:
            reference = self.forward("confidence", choice.parameter)
            stop_counts = [stopped.sum(dim=1) for stopped in reference.stopped_now]
        start = Stopwatch()
        if choice.dense:
            output = self.predictor.run(self.image, 1.0, with_aux=False)
        else:
            output = self.forward(policy, choice.parameter, stop_counts)
        mask = class_mask(output.logits, self.image_size)
        latency_ms = self.prefix_ms + start.ms()
        trace = build_trace(self.model, output)
        budget_flops = budget * self.dense_flops
        return PolicyResult(
            name=policy,
            mask=mask,
            halting_depth=trace.halting_depth,
            gflops=trace.flops / 1e9,
            dense_gflops=trace.dense_flops / 1e9,
            budget_gflops=budget_flops / 1e9,
            latency_ms=latency_ms,
            agreement=float((mask == self.dense_mask).mean()),
            parameter=float(choice.parameter),
            note=self._note(policy, choice, trace.flops / budget_flops if per_image else None),
            kept_tokens=tuple(g.tokens for g in trace.groups),
            trace=trace,
        )

    def _note(self, policy: str, choice: _Choice, budget_ratio: float | None) -> str:
        notes = []
        if choice.dense:
            notes.append("nothing stops at this budget: the dense forward")
        elif policy == "shallow":
            layer = self.model.decision_layers[int(choice.parameter) - 1]
            notes.append(f"every token stops after block {layer} (the cut nearest the budget)")
        elif policy == "oracle":
            notes.append("uses the dense model's answer: an upper bound, not deployable")
        elif policy == "dtop":
            notes.append(f"k = {self.dtop_k} per class kept for context; stopped tokens go to the decoder")
        elif policy == "random":
            notes.append("stops as many tokens per decision as confidence (at the xi in parameter)")
        if policy != "shallow" and budget_ratio is not None and abs(budget_ratio - 1.0) > BUDGET_TOLERANCE:
            notes.append(f"misses the budget: {budget_ratio:.1%} of it "
                         "(out of this policy's reach, or the search ran out of steps)")
        return "; ".join(notes)


# The parameter value at which a policy stops nothing, given D decisions.
_KEEP_ALL = {"confidence": lambda d: 1.0, "random": lambda d: 1.0, "dtop": lambda d: 1.0,
             "topk": lambda d: 1.0,
             "oracle": lambda d: 2.0, "shallow": lambda d: float(d + 1)}


def _trace_xi(policy: str, parameter: float) -> float:
    """The ξ recorded in the trace: the policy's own for confidence and dtop, 0 for the others."""
    return float(parameter) if policy in ("confidence", "dtop") else 0.0


def check_budget(budget: float) -> float:
    """budget as a float in (0, 1], or a ValueError that says what was wrong."""
    try:
        value = float(budget)
    except (TypeError, ValueError):
        raise ValueError(f"budget must be a fraction of the dense GFLOPs in (0, 1], got {budget!r}") from None
    if not np.isfinite(value) or not 0.0 < value <= 1.0:
        raise ValueError(f"budget must be a fraction of the dense GFLOPs in (0, 1], got {budget!r}")
    return value


def check_policies(policies: Sequence[str]) -> tuple[str, ...]:
    """The policy names, checked against POLICIES (ValueError naming the unknown ones)."""
    if isinstance(policies, str):
        policies = (policies,)
    unknown = [name for name in policies if name not in POLICIES]
    if unknown:
        raise ValueError(f"unknown policy {', '.join(map(repr, unknown))}; choose from {', '.join(POLICIES)}")
    return tuple(policies)


def run_policies(predictor: Predictor, image: np.ndarray, budget: float, policies: Sequence[str] = POLICIES,
                 seed: int = 0) -> list[PolicyResult]:
    """Run stopping policies on one image at one FLOPs budget; one PolicyResult per policy, in order.

    predictor: its model and preprocessing are used (its image cache is left alone). image: (H, W, 3)
    uint8 RGB. budget: a fraction in (0, 1] of the dense forward's FLOPs (``Trace.dense_flops``: embedding,
    all blocks on all tokens, decoder). policies: names from POLICIES. seed: the random policy's seed.
    Every policy but ``shallow`` lands within 2 % of the budget unless the budget lies below its cheapest
    setting (then ``note`` says so); at budget 1 every policy is the dense model.
    """
    budget = check_budget(budget)
    policies = check_policies(policies)
    runner = PolicyRunner(predictor, image, seed=seed)
    return [runner.run(name, budget) for name in policies]
