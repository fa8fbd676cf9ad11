"""Robustness to the shifts street photos have: mIoU under corruptions at severities 1-5, at each xi. Notes
and measurements: docs/library_notes.md.
"""
from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import albumentations as A
import cv2
import numpy as np
from albumentations.augmentations.pixel.functional import planckian_jitter
from tqdm import tqdm

from ..core.predictor import Predictor, check_xi
from ..data.augment import HELD_OUT_SHIFTS
from .metrics import ConfusionMatrix

SEVERITIES = (1, 2, 3, 4, 5)


class ColorTemperature(A.ImageOnlyTransform):
    """Re-light an image as under black-body light of ``kelvin`` (albumentations' Planckian jitter at one
    fixed temperature; its transform only samples ranges that contain 6000 K)."""

    def __init__(self, kelvin: int, p: float = 1.0) -> None:
        super().__init__(p=p)
        self.kelvin = int(kelvin)

    def apply(self, img: np.ndarray, **params) -> np.ndarray:
        return planckian_jitter(img, self.kelvin, mode="blackbody")


@dataclass(frozen=True)
class Shift:
    """A named image shift: ``build(severity)`` gives its albumentations transform (severity 1-5)."""

    name: str
    family: str
    build: Callable[[int], A.BasicTransform]


def _table(values, make) -> Callable[[int], A.BasicTransform]:
    """severity s -> make(values[s - 1]), applied to every image (p = 1)."""
    return lambda severity: make(values[severity - 1])


def _shifts() -> dict[str, Shift]:
    pixelate_pair = {"downscale": cv2.INTER_AREA, "upscale": cv2.INTER_NEAREST}
    rows = [
        ("gaussian_noise", "noise", [0.08, 0.12, 0.18, 0.26, 0.38],
         lambda c: A.GaussNoise(std_range=(c, c), p=1)),
        ("shot_noise", "noise", [60, 25, 12, 5, 3],  # photons per unit intensity; albumentations takes 1/c
         lambda c: A.ShotNoise(scale_range=(1 / c, 1 / c), p=1)),
        ("impulse_noise", "noise", [0.03, 0.06, 0.09, 0.17, 0.27],
         lambda c: A.SaltAndPepper(amount=(c, c), p=1)),
        ("defocus_blur", "blur", [(3, 0.1), (4, 0.5), (6, 0.5), (8, 0.5), (10, 0.5)],
         lambda c: A.Defocus(radius=(c[0], c[0]), alias_blur=(c[1], c[1]), p=1)),
        ("glass_blur", "blur", [(0.7, 1, 2), (0.9, 2, 1), (1.0, 2, 3), (1.1, 3, 2), (1.5, 4, 2)],
         lambda c: A.GlassBlur(sigma=c[0], max_delta=c[1], iterations=c[2], mode="fast", p=1)),
        ("motion_blur", "blur", [7, 11, 17, 25, 31],  # kernel ~ 2 * ImageNet-C's sigma + 1
         lambda c: A.MotionBlur(blur_limit=(c, c), allow_shifted=False, p=1)),
        ("zoom_blur", "blur", [(1.11, 0.01), (1.16, 0.01), (1.21, 0.02), (1.26, 0.02), (1.31, 0.03)],
         lambda c: A.ZoomBlur(max_factor=(c[0], c[0]), step_factor=(c[1], c[1]), p=1)),
        ("snow", "weather", [(0.1, 2.0), (0.2, 2.2), (0.3, 2.5), (0.4, 2.7), (0.5, 3.0)],
         lambda c: A.RandomSnow(snow_point_range=(c[0], c[0]), brightness_coeff=c[1], method="bleach", p=1)),
        ("fog", "weather", [0.2, 0.35, 0.5, 0.65, 0.8],
         lambda c: A.RandomFog(fog_coef_range=(c, c), alpha_coef=0.08, p=1)),
        ("brightness", "weather", [0.1, 0.2, 0.3, 0.4, 0.5],
         lambda c: A.RandomBrightnessContrast(brightness_limit=(c, c), contrast_limit=(0, 0), p=1)),
        ("contrast", "digital", [0.4, 0.3, 0.2, 0.1, 0.05],  # blend with the mean grey, as ImageNet-C
         lambda c: A.ColorJitter(brightness=(1, 1), contrast=(c, c), saturation=(1, 1), hue=(0, 0), p=1)),
        ("pixelate", "digital", [0.6, 0.5, 0.4, 0.3, 0.25],
         lambda c: A.Downscale(scale_range=(c, c), interpolation_pair=pixelate_pair, p=1)),
        ("jpeg_compression", "digital", [25, 18, 15, 10, 7],
         lambda c: A.ImageCompression(quality_range=(c, c), p=1)),
        ("color_temperature_cool", "camera", [8000, 9500, 11000, 13000, 15000],  # kelvin: bluer light
         lambda c: ColorTemperature(c)),
        ("color_temperature_warm", "camera", [5000, 4500, 4000, 3500, 3000],  # kelvin: tungsten, dusk
         lambda c: ColorTemperature(c)),
        ("white_balance", "camera", [0.06, 0.12, 0.18, 0.24, 0.30],  # random per-channel gains 1 +- c
         lambda c: A.MultiplicativeNoise(multiplier=(1 - c, 1 + c), per_channel=True, elementwise=False,
                                         p=1)),
        ("underexposure", "camera", [130, 160, 190, 220, 250],  # gamma x100: darker mid-tones
         lambda c: A.RandomGamma(gamma_limit=(c, c), p=1)),
        ("saturation", "camera", [1.4, 1.8, 2.2, 2.6, 3.0],  # vivid phone-camera colour
         lambda c: A.ColorJitter(brightness=(1, 1), contrast=(1, 1), saturation=(c, c), hue=(0, 0), p=1)),
        ("tint", "camera", [8, 16, 24, 32, 40],  # green shift on 0-255
         lambda c: A.RGBShift(r_shift_limit=(0, 0), g_shift_limit=(c, c), b_shift_limit=(0, 0), p=1)),
    ]
    return {name: Shift(name, family, _table(values, make)) for name, family, values, make in rows}


SHIFTS: dict[str, Shift] = _shifts()
FAMILIES = tuple(dict.fromkeys(shift.family for shift in SHIFTS.values()))


def apply_shift(image: np.ndarray, name: str, severity: int, seed: int = 0, index: int = 0) -> np.ndarray:
    """(H, W, 3) uint8 RGB -> the same image under shift ``name`` at ``severity`` (1-5), reproducibly: the
    random parts (noise, snow, gains) are drawn from a seed of (seed, shift, severity, frame ``index``)."""
    if name not in SHIFTS:
        raise ValueError(f"unknown shift {name!r}; choose from {', '.join(SHIFTS)}")
    if severity not in SEVERITIES:
        raise ValueError(f"severity must be one of {SEVERITIES}, got {severity!r}")
    pipeline = A.Compose([SHIFTS[name].build(severity)], seed=shift_seed(seed, name, severity, index))
    shifted = pipeline(image=np.ascontiguousarray(image))["image"]
    if shifted.shape != image.shape or shifted.dtype != np.uint8:
        raise RuntimeError(f"shift {name} returned {shifted.shape} {shifted.dtype} for {image.shape} uint8")
    return shifted


def shift_seed(seed: int, name: str, severity: int, index: int = 0) -> int:
    """A seed per (run seed, shift, severity, frame): the same corruption whatever else is measured."""
    return zlib.crc32(f"{seed}/{name}/{severity}/{index}".encode()) & 0x7FFFFFFF


@dataclass
class ShiftScore:
    shift: str
    family: str
    severity: int
    miou: float
    flops_saved: float  # fraction of the dense forward's FLOPs not spent, mean over frames
    class_accuracy: list[float | None] = field(default_factory=list)  # per class: its pixels predicted as it


@dataclass
class RobustnessResult:
    """One xi: the clean score, every (shift, severity) score, and their means (mIoU as fractions)."""

    xi: float
    clean_miou: float
    clean_flops_saved: float
    gflops: float  # mean per clean frame, everything computed
    dense_gflops: float
    scores: list[ShiftScore] = field(default_factory=list)
    clean_class_accuracy: list[float | None] = field(default_factory=list)

    @property
    def mean_shifted_miou(self) -> float:
        """The mean over shifts and severities (Cityscapes-C's mean corrupted mIoU)."""
        return float(np.mean([s.miou for s in self.scores])) if self.scores else float("nan")

    @property
    def mean_flops_saved_shifted(self) -> float:
        return float(np.mean([s.flops_saved for s in self.scores])) if self.scores else float("nan")

    def shift_means(self) -> dict[str, float]:
        """mIoU per shift, the mean over its severities."""
        names = dict.fromkeys(s.shift for s in self.scores)
        return {n: float(np.mean([s.miou for s in self.scores if s.shift == n])) for n in names}

    def mean_over(self, shifts) -> float:
        values = [s.miou for s in self.scores if s.shift in shifts]
        return float(np.mean(values)) if values else float("nan")

    def to_dict(self) -> dict:
        return {**asdict(self), "mean_shifted_miou": self.mean_shifted_miou,
                "mean_flops_saved_shifted": self.mean_flops_saved_shifted, "shift_means": self.shift_means(),
                "held_out_mean_miou": self.mean_over(HELD_OUT_SHIFTS),
                "trained_mean_miou": self.mean_over([n for n in SHIFTS if n not in HELD_OUT_SHIFTS])}


class _Tally:
    """Confusion matrices and FLOPs fractions of one condition (clean, or a shift at a severity) per xi."""

    def __init__(self, num_classes: int, ignore_index: int, xi_values) -> None:
        self.matrices = {xi: ConfusionMatrix(num_classes, ignore_index) for xi in xi_values}
        self.saved = {xi: [] for xi in xi_values}
        self.gflops = {xi: [] for xi in xi_values}
        self.dense_gflops = {xi: [] for xi in xi_values}

    def add(self, predictor: Predictor, image: np.ndarray, label: np.ndarray) -> None:
        # at the checkpoint's input size, as dovit.evaluate (the clean score is evaluate's on any aspect)
        size = tuple(predictor.config.input_size)
        for xi in self.matrices:
            prediction = predictor.predict_batch([image], xi=xi, size=size, dense=False)[0]
            self.matrices[xi].update(prediction.mask, label)
            self.saved[xi].append(prediction.trace.flops_saved)
            self.gflops[xi].append(prediction.trace.flops / 1e9)
            self.dense_gflops[xi].append(prediction.trace.dense_flops / 1e9)

    def miou(self, xi: float) -> float:
        return float(self.matrices[xi].scores()["miou"])

    def class_accuracy(self, xi: float) -> list[float | None]:
        """Per class, the share of its labelled pixels predicted as it (None: no such pixels)."""
        matrix = self.matrices[xi].matrix
        totals = matrix.sum(axis=1)
        return [float(matrix[c, c] / totals[c]) if totals[c] else None for c in range(len(totals))]


def run_robustness(predictor: Predictor, dataset, xi_values: list[float], shifts: list[str] | None = None,
                   severities=SEVERITIES, max_images: int | None = None, seed: int = 0,
                   progress: bool = True, frame_step: int = 1) -> list[RobustnessResult]:
    """Score ``predictor`` on ``dataset`` (items: (H, W, 3) uint8 image, (H, W) labels) clean and under each
    shift at each severity, at every xi; one RobustnessResult per xi, in the order given. Frames: every
    ``frame_step``-th (neighbouring video frames look alike), at most ``max_images`` of them."""
    xi_values = [check_xi(xi) for xi in xi_values]
    names = list(shifts) if shifts else list(SHIFTS)
    for name in names:
        if name not in SHIFTS:
            raise ValueError(f"unknown shift {name!r}; choose from {', '.join(SHIFTS)}")
    for severity in severities:
        if severity not in SEVERITIES:
            raise ValueError(f"severity must be one of {SEVERITIES}, got {severity!r}")
    if frame_step < 1:
        raise ValueError(f"frame_step must be at least 1, got {frame_step}")
    indices = list(range(0, len(dataset), frame_step))[:max_images]
    count = len(indices)
    if count < 1:
        raise ValueError("no images to score")
    config = predictor.config
    conditions = [(None, 0)] + [(name, s) for name in names for s in severities]
    tallies = {c: _Tally(config.num_classes, config.ignore_index, xi_values) for c in conditions}
    bar = tqdm(total=count * len(conditions), desc="robustness", disable=not progress, dynamic_ncols=True)
    for index in indices:
        image, label = dataset[index]
        for name, severity in conditions:
            shifted = image if name is None else apply_shift(image, name, severity, seed, index)
            tallies[(name, severity)].add(predictor, shifted, label)
            bar.update(1)
    bar.close()
    return [_result(xi, tallies, conditions) for xi in xi_values]


def _result(xi: float, tallies: dict, conditions) -> RobustnessResult:
    clean = tallies[(None, 0)]
    scores = [
        ShiftScore(
            name,
            SHIFTS[name].family,
            severity,
            tallies[(name, severity)].miou(xi),
            float(np.mean(tallies[(name, severity)].saved[xi])),
            tallies[(name, severity)].class_accuracy(xi),
        )
        for name, severity in conditions
        if name is not None
    ]
    return RobustnessResult(xi=xi, clean_miou=clean.miou(xi),
                            clean_flops_saved=float(np.mean(clean.saved[xi])),
                            gflops=float(np.mean(clean.gflops[xi])),
                            dense_gflops=float(np.mean(clean.dense_gflops[xi])),
                            scores=scores, clean_class_accuracy=clean.class_accuracy(xi))


def markdown_table(results: list[RobustnessResult]) -> str:
    """Per xi: clean mIoU, mean shifted mIoU (all, trained-on, held-out shifts), per-family means, FLOPs
    saved."""
    head = ["ξ", "clean mIoU", "shifted mean", "trained-on shifts", "held-out shifts",
            *FAMILIES, "FLOPs saved clean", "FLOPs saved shifted"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        families = [r.mean_over([n for n in SHIFTS if SHIFTS[n].family == f]) for f in FAMILIES]
        row = [f"{r.xi:g}", *(f"{100 * v:.2f}" for v in (
            r.clean_miou, r.mean_shifted_miou, r.mean_over([n for n in SHIFTS if n not in HELD_OUT_SHIFTS]),
            r.mean_over(HELD_OUT_SHIFTS), *families)),
            f"{100 * r.clean_flops_saved:.1f}%", f"{100 * r.mean_flops_saved_shifted:.1f}%"]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines).replace("nan", "–")


def shift_table(result: RobustnessResult) -> str:
    """mIoU of each shift at each severity for one xi."""
    severities = sorted({s.severity for s in result.scores})
    lines = ["| shift | family | " + " | ".join(f"s{s}" for s in severities) + " | mean |",
             "|---|---|" + "---|" * (len(severities) + 1)]
    for name, mean in result.shift_means().items():
        cells = [f"{100 * s.miou:.1f}" for s in result.scores if s.shift == name]
        held = " (held out)" if name in HELD_OUT_SHIFTS else ""
        lines.append(f"| {name}{held} | {SHIFTS[name].family} | " + " | ".join(cells)
                     + f" | {100 * mean:.1f} |")
    return "\n".join(lines)
