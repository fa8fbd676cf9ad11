"""The data-set report's analysis (``python -m dovit.analyze``, the studio's Data set tab): over a whole
folder or video, where DoViT stops, where it is wrong while confident, and what each xi costs and buys. Notes
and measurements: docs/library_notes.md.
"""
from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ..core.flops import FLOPS_CONVENTION, forward_flops
from ..core.predictor import Predictor, check_xi
from ..core.preprocess import class_mask, resize_image
from ..core.stopwatch import Stopwatch
from ..core.token_grid import token_index_map, token_majority, token_sums
from ..core.trace import Trace, build_trace
from ..data import DATASETS, folders
from ..evaluation.metrics import ConfusionMatrix
from ..viz.video import FrameRecord, count_frames, iter_named_frames, overlay_frame

DEFAULT_XI_GRID = (0.8, 0.85, 0.9, 0.95, 0.98, 1.0)
CALIBRATION_BINS = 10
HISTOGRAM_BINS = 20
THUMBNAIL_WIDTH = 200
# Where each data set's split folder sits below its root: camvid ROOT/val, cityscapes ROOT/leftImg8bit/val,
# ade20k ROOT/images/validation (dovit.data reads the labels from the layout).
SPLIT_FOLDER_DEPTH = {"camvid": 1, "cityscapes": 2, "ade20k": 2}


# ------------------------------------------------------------------ pure statistics
@dataclass
class CalibrationCounts:
    """Per confidence bin [i / bins, (i + 1) / bins): tokens, sum of confidences, correct tokens."""

    tokens: np.ndarray  # (bins,) int64
    confidence_sum: np.ndarray  # (bins,) float64
    correct: np.ndarray  # (bins,) int64

    @classmethod
    def empty(cls, bins: int = CALIBRATION_BINS) -> CalibrationCounts:
        return cls(np.zeros(bins, np.int64), np.zeros(bins, np.float64), np.zeros(bins, np.int64))

    def __add__(self, other: CalibrationCounts) -> CalibrationCounts:
        return CalibrationCounts(self.tokens + other.tokens, self.confidence_sum + other.confidence_sum,
                                 self.correct + other.correct)


def calibration_counts(confidence: np.ndarray, correct: np.ndarray,
                       bins: int = CALIBRATION_BINS) -> CalibrationCounts:
    """Bin tokens by confidence (any shape, values in [0, 1]; 1.0 falls in the last bin) with whether
    their predicted class was right (bool, same shape)."""
    confidence = np.asarray(confidence, np.float64).reshape(-1)
    correct = np.asarray(correct, bool).reshape(-1)
    index = np.clip((confidence * bins).astype(np.int64), 0, bins - 1)
    return CalibrationCounts(np.bincount(index, minlength=bins), np.bincount(index, confidence,
                                                                             minlength=bins),
                             np.bincount(index, correct, minlength=bins).astype(np.int64))


def expected_calibration_error(counts: CalibrationCounts) -> float | None:
    """ECE = sum over bins of (tokens in bin / all tokens) * |accuracy - mean confidence| (Guo et al. 2017);
    None without tokens."""
    total = counts.tokens.sum()
    if total == 0:
        return None
    filled = counts.tokens > 0
    gap = np.abs(counts.correct[filled] - counts.confidence_sum[filled]) / counts.tokens[filled]
    return float((counts.tokens[filled] * gap).sum() / total)


def reliability_rows(counts: CalibrationCounts) -> list[dict]:
    """One dict per bin: lower, upper, tokens, confidence (mean) and accuracy (None for an empty bin)."""
    bins = len(counts.tokens)
    return [
        {"lower": i / bins, "upper": (i + 1) / bins, "tokens": int(n),
         "confidence": float(counts.confidence_sum[i] / n) if n else None,
         "accuracy": float(counts.correct[i] / n) if n else None}
        for i, n in enumerate(counts.tokens)
    ]


def halting_depth_counts(depth: np.ndarray, token_class: np.ndarray, num_classes: int,
                         num_groups: int) -> np.ndarray:
    """(num_classes, num_groups) int64: tokens of each class that stopped after group g (column g - 1;
    the last column: ran every block). Tokens whose class lies outside [0, num_classes) are left out."""
    depth, token_class = np.asarray(depth).reshape(-1), np.asarray(token_class).reshape(-1)
    valid = (token_class >= 0) & (token_class < num_classes)
    flat = token_class[valid].astype(np.int64) * num_groups + (depth[valid].astype(np.int64) - 1)
    return np.bincount(flat, minlength=num_classes * num_groups).reshape(num_classes, num_groups)


def histogram(values: Iterable[float], bins: int = HISTOGRAM_BINS) -> dict:
    """{"edges": bins + 1 floats, "counts": bins ints} of the values (one bin around a constant)."""
    values = np.asarray(list(values), np.float64)
    if values.size == 0:
        return {"edges": [], "counts": []}
    low, high = float(values.min()), float(values.max())
    if high <= low:
        low, high = low - 0.5, high + 0.5
    counts, edges = np.histogram(values, bins=bins, range=(low, high))
    return {"edges": edges.tolist(), "counts": counts.tolist()}


@dataclass
class StoppedCounts:
    """Tokens one decision stopped (or that ran every block) and how wrong they were.

    labelled_tokens / aux_wrong: stopped tokens with a class, and those whose aux-head class at the
    decision differed from it; pixels / pixel_wrong: labelled pixels of the stopped tokens' patches and
    those the final mask got wrong.
    """

    tokens: int = 0
    labelled_tokens: int = 0
    aux_wrong: int = 0
    pixels: int = 0
    pixel_wrong: int = 0

    def __add__(self, other: StoppedCounts) -> StoppedCounts:
        return StoppedCounts(*(a + b for a, b in zip(asdict(self).values(), asdict(other).values(),
                                                     strict=False)))

    def rates(self) -> dict:
        return {**asdict(self),
                "aux_error_rate": self.aux_wrong / self.labelled_tokens if self.labelled_tokens else None,
                "final_pixel_error_rate": self.pixel_wrong / self.pixels if self.pixels else None}


def stopped_counts(selected: np.ndarray, token_class: np.ndarray, aux_class: np.ndarray | None,
                   pixels: np.ndarray, pixel_wrong: np.ndarray, num_classes: int) -> StoppedCounts:
    """Counts over the ``selected`` tokens (N,) bool: token_class (N,), aux_class (N,) the aux head's
    argmax (None: not counted), pixels / pixel_wrong (N,) labelled and wrongly predicted pixels per token."""
    labelled = selected & (token_class >= 0) & (token_class < num_classes)
    aux_wrong = 0 if aux_class is None else int((aux_class[labelled] != token_class[labelled]).sum())
    return StoppedCounts(int(selected.sum()), int(labelled.sum()) if aux_class is not None else 0, aux_wrong,
                         int(pixels[selected].sum()), int(pixel_wrong[selected].sum()))


# ------------------------------------------------------------------ one image
@dataclass
class SweepPoint:
    """One xi of the grid on one image (or summed over images): FLOPs, pixel agreement with the dense
    mask, and the confusion matrix against the labels (None without labels)."""

    xi: float
    flops: float
    dense_flops: float
    backbone_flops: float
    dense_backbone_flops: float
    agreeing_pixels: int
    pixels: int
    confusion: np.ndarray | None = None


@dataclass
class ImageAnalysis:
    """What ``analyse_image`` finds on one image at the report's xi (``record``, ``trace``) and over the
    grid."""

    record: FrameRecord
    trace: Trace
    working_size: tuple[int, int]
    patch: int
    depth_counts: np.ndarray  # (C, D + 1) tokens per class and halting depth
    calibration: list[CalibrationCounts]  # per decision; empty without labels
    stopped: list[StoppedCounts]  # per decision, then the tokens that ran every block; empty without labels
    sweep: list[SweepPoint]


@torch.inference_mode()
def analyse_image(predictor: Predictor, image: np.ndarray, label: np.ndarray | None, xi: float,
                  xi_grid: Iterable[float] = DEFAULT_XI_GRID, name: str = "", index: int = 0,
                  bins: int = CALIBRATION_BINS) -> ImageAnalysis:
    """Analyse one (H, W, 3) uint8 RGB image, with its (H, W) int label map (``ignore_index`` = void) or None.

    The image is prepared once (``Predictor.prepare``: embedding, B_1 and the dense reference for agreement);
    then a forward per xi of ``xi_grid``, and xi's with the aux heads (the report's decisions). Masks are
    compared at the image's resolution, as ``dovit.evaluate`` compares them to labels.
    """
    model, config = predictor.model, predictor.config
    if label is not None and label.shape != image.shape[:2]:
        raise ValueError(f"{name or 'image'}: image {image.shape[:2]} and label {label.shape} differ in size")
    size = image.shape[:2]
    prepared = predictor.prepare(image)
    prefix_ms = prepared.prefix_ms
    outputs, masks, run_ms = {1.0: prepared.dense}, {1.0: prepared.dense_mask}, {1.0: prepared.dense_ms}
    for value in sorted({check_xi(v) for v in xi_grid} - {1.0}):
        start = Stopwatch()
        outputs[value] = predictor.run(prepared, value)
        masks[value] = class_mask(outputs[value].logits, size)
        run_ms[value] = start.ms()
    if xi < 1.0 and xi in outputs:  # the aux heads ran already
        main, mask = outputs[xi], masks[xi]
    else:  # xi = 1 (aux heads off above) or off the grid
        start = Stopwatch()
        main = predictor.run(prepared, xi, with_aux=True)
        mask = class_mask(main.logits, size)
        run_ms[xi] = start.ms()
    latency_ms = prefix_ms + run_ms[xi]
    trace = build_trace(model, main)
    record = FrameRecord(frame=index, gflops=trace.flops / 1e9, dense_gflops=trace.dense_flops / 1e9,
                         kept_tokens=[g.tokens for g in trace.groups], latency_ms=latency_ms, name=name,
                         xi=xi)
    dense_mask = masks[1.0]
    sweep = [_sweep_point(model, value, output, masks[value], dense_mask, label, config)
             for value, output in sorted(outputs.items())]

    num_tokens, num_classes = trace.num_tokens, config.num_classes
    token_index = token_index_map(size, prepared.working_size, trace.grid, model.patch_size)
    token_class = token_majority(mask if label is None else label, token_index, num_tokens, num_classes)
    depth = trace.halting_depth.reshape(-1)
    depth_counts = halting_depth_counts(depth, token_class, num_classes, len(trace.groups))
    calibration, stopped = [], []
    if label is not None:
        calibration, stopped = _decision_counts(trace, main.aux_logits, label, mask, token_index, token_class,
                                                num_classes, bins)
    return ImageAnalysis(record, trace, prepared.working_size, model.patch_size, depth_counts,
                         calibration, stopped, sweep)


def _decision_counts(trace: Trace, aux_logits: list, label: np.ndarray, mask: np.ndarray,
                     token_index: np.ndarray, token_class: np.ndarray, num_classes: int,
                     bins: int) -> tuple[list, list]:
    """Per decision of a labelled image: the aux heads' calibration counts and the stopped tokens' counts."""
    num_tokens, depth = trace.num_tokens, trace.halting_depth.reshape(-1)
    labelled = (label >= 0) & (label < num_classes)
    pixel_count = token_sums(labelled, token_index, num_tokens)
    pixel_wrong = token_sums(labelled & (mask != label), token_index, num_tokens)
    has_class = token_class >= 0
    reached = np.ones(num_tokens, bool)
    calibration, stopped = [], []
    for decision, logits in zip(trace.decisions, aux_logits, strict=False):
        aux_class = logits[0].argmax(0).reshape(-1).cpu().numpy()
        confidence = decision.confidence.reshape(-1)
        population = reached & has_class  # the tokens this decision was taken on
        calibration.append(calibration_counts(confidence[population],
                                              aux_class[population] == token_class[population], bins))
        stopped.append(stopped_counts(decision.stopped_here.reshape(-1), token_class, aux_class, pixel_count,
                                      pixel_wrong, num_classes))
        reached = decision.keep_mask.reshape(-1)
    stopped.append(stopped_counts(depth == len(trace.groups), token_class, None, pixel_count, pixel_wrong,
                                  num_classes))
    return calibration, stopped


def _sweep_point(model, xi: float, output, mask: np.ndarray, dense_mask: np.ndarray, label: np.ndarray | None,
                 config) -> SweepPoint:
    flops = forward_flops(model, output.grid, output.group_tokens[0].tolist(), len(output.aux_logits))
    confusion = None
    if label is not None:
        matrix = ConfusionMatrix(config.num_classes, config.ignore_index)
        matrix.update(mask, label)
        confusion = matrix.matrix
    return SweepPoint(xi, flops.total, flops.dense_total, flops.backbone, flops.dense_backbone,
                      int((mask == dense_mask).sum()), int(mask.size), confusion)


# ------------------------------------------------------------------ the whole set
@dataclass(order=True)
class _Ranked:
    """A thumbnail candidate; the larger (key, -index) wins, so ties go to the earlier frame in any order."""

    key: float
    order: int  # -frame index
    name: str = field(compare=False)
    thumbnail: np.ndarray = field(compare=False, repr=False)


class ReportAccumulator:
    """Adds up ``ImageAnalysis`` results; ``summary()`` is the report (JSON-ready).

    Keeps per-image records (a few numbers each), additive counts, and thumbnails of only the
    ``thumbnails`` cheapest and most expensive images.
    """

    def __init__(self, class_names: list[str], decision_layers: Iterable[int], xi: float,
                 xi_grid: Iterable[float],
                 has_labels: bool, thumbnails: int = 4, bins: int = CALIBRATION_BINS) -> None:
        self.class_names = list(class_names)
        self.decision_layers = [int(v) for v in decision_layers]
        self.xi, self.has_labels, self.thumbnails, self.bins = float(xi), has_labels, thumbnails, bins
        self.xi_grid = sorted({float(v) for v in xi_grid} | {1.0, self.xi})  # the report's xi is on the curve
        groups = len(self.decision_layers) + 1
        self.records: list[FrameRecord] = []
        self.depth_counts = np.zeros((len(self.class_names), groups), np.int64)
        self.calibration = [CalibrationCounts.empty(bins) for _ in self.decision_layers]
        self.stopped = [StoppedCounts() for _ in range(groups)]
        self.sweep: dict[float, SweepPoint] = {}
        self.num_tokens = 0
        self._cheapest: list[_Ranked] = []  # max-heap by GFLOPs (negated keys)
        self._expensive: list[_Ranked] = []  # min-heap by GFLOPs

    def add(self, result: ImageAnalysis, image: np.ndarray) -> None:
        """Add one image's analysis; ``image`` (H, W, 3) uint8 is kept only as a thumbnail, and only when
        the image is among the cheapest or the most expensive so far."""
        record = result.record
        self.records.append(record)
        self.num_tokens = result.trace.num_tokens
        self.depth_counts += result.depth_counts
        if result.calibration:  # labelled images only
            self.calibration = [a + b for a, b in zip(self.calibration, result.calibration, strict=False)]
            self.stopped = [a + b for a, b in zip(self.stopped, result.stopped, strict=False)]
        for point in result.sweep:
            self._add_point(point)
        thumb = None  # drawn only for an image that makes one of the two lists
        for heap, key in ((self._cheapest, -record.gflops), (self._expensive, record.gflops)):
            if self._enters(heap, key, record.frame):
                thumb = thumb if thumb is not None else thumbnail(image, result)
                self._offer(heap, _Ranked(key, -record.frame, record.name, thumb))

    def merge(self, other: ReportAccumulator) -> None:
        """Add the images of another accumulator of the same run (another shard): counts add up exactly,
        records stay in frame order and the thumbnails are those a single run would keep."""
        if (other.class_names, other.decision_layers, other.xi, other.xi_grid) != (
                self.class_names, self.decision_layers, self.xi, self.xi_grid):
            raise ValueError("cannot merge reports of different models, thresholds or grids")
        self.records = sorted(self.records + other.records, key=lambda r: r.frame)
        self.num_tokens = self.num_tokens or other.num_tokens
        self.depth_counts = self.depth_counts + other.depth_counts
        self.calibration = [a + b for a, b in zip(self.calibration, other.calibration, strict=False)]
        self.stopped = [a + b for a, b in zip(self.stopped, other.stopped, strict=False)]
        for point in other.sweep.values():
            self._add_point(point)
        for heap, entries in ((self._cheapest, other._cheapest), (self._expensive, other._expensive)):
            for entry in entries:
                self._offer(heap, entry)

    def _add_point(self, point: SweepPoint) -> None:
        total = self.sweep.get(point.xi)
        self.sweep[point.xi] = point if total is None else SweepPoint(
            point.xi, total.flops + point.flops, total.dense_flops + point.dense_flops,
            total.backbone_flops + point.backbone_flops, total.dense_backbone_flops
            + point.dense_backbone_flops,
            total.agreeing_pixels + point.agreeing_pixels, total.pixels + point.pixels,
            None if point.confusion is None else total.confusion + point.confusion)

    def _enters(self, heap: list[_Ranked], key: float, frame: int) -> bool:
        return self.thumbnails > 0 and (len(heap) < self.thumbnails or (key, -frame) > (heap[0].key,
                                                                                        heap[0].order))

    def _offer(self, heap: list[_Ranked], entry: _Ranked) -> None:
        if self._enters(heap, entry.key, -entry.order):
            (heapq.heappush if len(heap) < self.thumbnails else heapq.heapreplace)(heap, entry)

    def ranked_thumbnails(self) -> dict[str, list[tuple[str, float, np.ndarray]]]:
        """{"cheapest": [...], "most_expensive": [...]}: (name, GFLOPs, thumbnail) cheapest / dearest
        first."""
        cheapest = sorted(self._cheapest, reverse=True)
        dearest = sorted(self._expensive, reverse=True)
        return {"cheapest": [(r.name, -r.key, r.thumbnail) for r in cheapest],
                "most_expensive": [(r.name, r.key, r.thumbnail) for r in dearest]}

    def summary(self) -> dict:
        """The report as plain numbers (``report.json``); GFLOPs are means per image."""
        count = len(self.records)
        gflops = [r.gflops for r in self.records]
        groups = len(self.decision_layers) + 1
        kept = np.array([[t / max(self.num_tokens, 1) for t in r.kept_tokens[1:]]
                         for r in self.records]).reshape(
            count, groups - 1)
        ranked = self.ranked_thumbnails()
        summary = {
            "images": count,
            "xi": self.xi,
            "num_tokens": self.num_tokens,
            "flops_convention": FLOPS_CONVENTION,
            "gflops": {"mean": float(np.mean(gflops)) if count else None,
                       "min": float(np.min(gflops)) if count else None,
                       "max": float(np.max(gflops)) if count else None,
                       "dense_mean": float(np.mean([r.dense_gflops for r in self.records])) if count
                       else None,
                       "histogram": histogram(gflops)},
            "cheapest": [name for name, _, _ in ranked["cheapest"]],
            "most_expensive": [name for name, _, _ in ranked["most_expensive"]],
            "kept_fraction_per_decision": [
                {"layer": layer, "mean": float(kept[:, d].mean()) if count else None,
                 "min": float(kept[:, d].min()) if count else None,
                 "max": float(kept[:, d].max()) if count else None}
                for d, layer in enumerate(self.decision_layers)],
            "halting_depth_per_class": self._halting_rows(),
            "class_source": "labels" if self.has_labels else "predictions",
            "tradeoff": [self._tradeoff_row(self.sweep[xi], count) for xi in self.xi_grid
                         if xi in self.sweep],
            "per_image": [asdict(r) for r in self.records],
        }
        if self.has_labels:
            summary["calibration"] = [
                {"layer": layer, "ece": expected_calibration_error(counts),
                 "tokens": int(counts.tokens.sum()),
                 "bins": reliability_rows(counts)}
                for layer, counts in zip(self.decision_layers, self.calibration, strict=False)]
            summary["stopped_tokens"] = [
                {"stopped_at": f"decision after block {layer}", "layer": layer, **counts.rates()}
                for layer, counts in zip(self.decision_layers, self.stopped, strict=False)
            ] + [{"stopped_at": "ran every block", "layer": None, **self.stopped[-1].rates()}]
        return summary

    def _halting_rows(self) -> list[dict]:
        rows = []
        for name, counts in zip(self.class_names, self.depth_counts, strict=False):
            total = int(counts.sum())
            fractions = (counts / total).tolist() if total else [None] * len(counts)
            mean_depth = float((counts * np.arange(1, len(counts) + 1)).sum() / total) if total else None
            rows.append({"class": name, "tokens": total, "fraction_per_depth": fractions,
                         "mean_depth": mean_depth})
        return rows

    def _tradeoff_row(self, point: SweepPoint, count: int) -> dict:
        row = {"xi": point.xi, "gflops": point.flops / count / 1e9,
               "dense_gflops": point.dense_flops / count / 1e9,
               "backbone_gflops": point.backbone_flops / count / 1e9,
               "dense_backbone_gflops": point.dense_backbone_flops / count / 1e9,
               "agreement_with_dense": point.agreeing_pixels / max(point.pixels, 1)}
        if point.confusion is not None:
            matrix = ConfusionMatrix(len(self.class_names))
            matrix.matrix = point.confusion
            row.update(matrix.scores())
        return row


def thumbnail(image: np.ndarray, result: ImageAnalysis, width: int = THUMBNAIL_WIDTH) -> np.ndarray:
    """The image beside its halting-depth overlay, each ``width`` pixels wide: (h, 2 * width + 4, 3) uint8."""
    height = max(1, round(image.shape[0] * width / image.shape[1]))
    overlay = overlay_frame(image, "halting", result.trace, result.working_size, result.patch, opacity=0.6)
    small = [resize_image(picture, (height, width)) for picture in (image, overlay)]
    return np.concatenate([small[0], np.full((height, 4, 3), 255, np.uint8), small[1]], axis=1)


# ------------------------------------------------------------------ inputs
@dataclass
class Frame:
    name: str
    image: np.ndarray  # (H, W, 3) uint8 RGB
    label: np.ndarray | None  # (H, W) int64, ignore_index = void
    index: int  # position in the whole input (frame number), also under sharding


def labelled_frames(dataset, max_images: int | None = None, rank: int = 0, world: int = 1) -> Iterator[Frame]:
    """Frames of a ``dovit.data.SegmentationDataset`` (labels already mapped to train ids), one at a time;
    with ``world`` > 1 only every world-th from ``rank`` (only those are read)."""
    for index in range(rank, _count(len(dataset), max_images), world):
        image, label = dataset.load(index)
        yield Frame(Path(dataset.pairs[index][0]).stem, image, label, index)


def _count(available: int | None, max_images: int | None) -> int | None:
    return available if max_images is None or available is None else min(available, max_images)


def open_input(source: str | Path, labels: str | Path | None, dataset_name: str | None,
               class_names: list[str],
               max_images: int | None = None, max_side: int | None = None, rank: int = 0,
               world: int = 1) -> tuple[Iterator[Frame], int | None, str]:
    """(frames, how many in all or None, a line saying what is read) for
    ``--input``/``--labels``/``--dataset``.

    dataset_name (camvid, cityscapes, ade20k): ``source`` is that layout's split folder and labels come
    from the layout, mapped to train ids. Otherwise with ``labels``: same-stem PNG labels (255 = void),
    images without one left out. Otherwise: a video file or image folder without labels. rank / world:
    this process's share (frames rank, rank + world, ...).
    """
    source = Path(source)
    if dataset_name and dataset_name != "folders":
        if dataset_name not in SPLIT_FOLDER_DEPTH:
            raise ValueError(f"unknown data set {dataset_name!r}; choose from {sorted(SPLIT_FOLDER_DEPTH)} "
                             "or folders")
        root = source.parents[SPLIT_FOLDER_DEPTH[dataset_name] - 1]
        dataset = DATASETS[dataset_name](root, source.name)
        label_folder = Path(dataset.pairs[0][1]).parent
        if labels is not None and Path(labels).resolve() not in (label_folder.resolve(),
                                                                 *label_folder.resolve().parents):
            raise ValueError(f"--dataset {dataset_name} reads labels from its layout ({label_folder}), not "
                             f"{labels}")
        if len(dataset.info.class_names) != len(class_names):
            raise ValueError(f"the checkpoint predicts {len(class_names)} classes, {dataset_name} has "
                             f"{dataset.info.num_classes}")
        what = f"{dataset_name} {source}"
    elif labels is not None:
        if not source.is_dir():
            raise ValueError(f"--labels needs --input to be a folder of images, got {source}")
        dataset = folders(source, labels, class_names)
        what = f"{source} with labels {labels}"
    else:
        frames = (Frame(name, image, None, index)
                  for index, (name, image) in enumerate(iter_named_frames(source, max_images, max_side))
                  if index % world == rank)
        return frames, _count(count_frames(source), max_images), f"{source} (no labels)"
    count = _count(len(dataset), max_images)
    return labelled_frames(dataset, max_images, rank, world), count, f"{what} ({count} labelled images)"


# ------------------------------------------------------------------ a whole set at once
def analyse_frames(predictor: Predictor, frames: Iterable[Frame], xi: float, xi_grid: Iterable[float],
                   has_labels: bool,
            total: int | None = None, thumbnails: int = 4, progress: bool = True) -> ReportAccumulator:
    """Run ``analyse_image`` over ``frames`` with a progress bar; returns the filled accumulator.

    A caller with its own progress or cancel button (the app) loops itself:
    ``accumulator.add(analyse_image(...), frame.image)`` per frame, then ``accumulator.summary()``."""
    accumulator = ReportAccumulator(predictor.config.class_names, predictor.model.decision_layers, xi,
                                    xi_grid,
                                    has_labels, thumbnails)
    for frame in tqdm(frames, total=total, desc="analyse", disable=not progress, unit="img"):
        accumulator.add(analyse_image(predictor, frame.image, frame.label, xi, accumulator.xi_grid,
                                      frame.name,
                                      frame.index), frame.image)
    return accumulator


def report_line(summary: dict) -> str:
    """One line: images, mean GFLOPs vs dense, and mIoU / agreement at the report's xi."""
    row = next((r for r in summary["tradeoff"] if r["xi"] == summary["xi"]), None)
    line = (f"{summary['images']} images in {summary.get('seconds', 0):.1f} s; xi {summary['xi']:g}: "
            f"{summary['gflops']['mean']:.2f} GFLOPs (dense {summary['gflops']['dense_mean']:.2f})")
    if row is not None:
        line += f", agreement with dense {100 * row['agreement_with_dense']:.2f}%"
        if "miou" in row:
            line += f", mIoU {100 * row['miou']:.2f}"
    return line
