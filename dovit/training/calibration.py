"""Label-free DoViT from any dense checkpoint: train the aux heads on the dense model's own predictions. Notes
and measurements: docs/library_notes.md.
"""
from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import albumentations as A
import cv2
import numpy as np
import torch
from tqdm import tqdm

from ..core.checkpoint import CheckpointError, atomic_write, load_checkpoint, save_checkpoint
from ..core.model import DoViTSegmenter
from ..core.predictor import Predictor
from ..core.preprocess import normalise, resize_image
from ..core.stopwatch import Stopwatch
from ..data.augment import robust_photometric
from ..data.datasets import IMAGE_SUFFIXES
from ..evaluation.confidence_range import METADATA_KEY, measure_range
from .losses import dovit_loss

TRAINABLE = ("aux", "aux+decoder", "aux+decoder+norms")
XI_GRID = (1.0, 0.999, 0.998, 0.995, 0.99, 0.98, 0.97, 0.96, 0.95, 0.94, 0.93, 0.92, 0.9, 0.88, 0.85, 0.8,
           0.75, 0.7)
MIN_IMAGE_SIDE = 32  # two 16-pixel patches


HOLD_OUT_SHARE = 8  # the last eighth of the images (in name order) picks xi and is never trained on


class CalibrationError(ValueError):
    """Input that calibration cannot use (no images, unreadable or too small ones, a bad checkpoint)."""


@dataclass
class CalibrateConfig:
    source: str
    output: str
    images: str
    minutes: float = 18.0  # with choosing xi, 19-20 minutes for ViT-T at 360 x 480 on 2 CPU cores
    train: str = "aux+decoder"
    decision_layers: tuple[int, ...] | None = None  # None: calibration_layers of the source's depth
    target_agreement: float = 0.97
    batch_size: int = 4
    lr: float = 1e-3
    finetune_lr_scale: float = 0.1  # the decoder's and norms' learning rate, as a share of lr
    xi_range: tuple[float, float] = (0.8, 1.0)
    max_images: int | None = None
    seed: int = 0
    # the robust preset's colour and camera shifts on the crops (teacher sees them too)
    colour_shifts: bool = False
    resume: bool = False
    progress: bool = True


@dataclass
class XiPoint:
    xi: float
    agreement: float  # pixels whose class is the dense model's, mean over held-back images
    flops_saved: float  # of the dense forward's total FLOPs, mean over held-back images


@dataclass
class CalibrationResult:
    output: Path
    default_xi: float
    steps: int
    seconds: float
    train_images: int
    held_out_images: int
    curve: list[XiPoint] = field(default_factory=list)


# ---------------------------------------------------------------------------------------- inputs
def read_images(folder: str | Path, min_side: int = MIN_IMAGE_SIDE,
                max_images: int | None = None) -> list[Path]:
    """The image files in ``folder`` (and below it), checked readable and at least ``min_side`` pixels on
    each side; CalibrationError naming the first bad ones, or saying none were found."""
    root = Path(folder)
    if not root.is_dir():
        raise CalibrationError(f"--images: {folder} is not a folder")
    paths = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if max_images:
        paths = paths[:max_images]
    if not paths:
        raise CalibrationError(f"--images: no images ({', '.join(IMAGE_SUFFIXES)}) in {folder}")
    unreadable, small = [], []
    for path in paths:
        size = _image_size(path)
        if size is None:
            unreadable.append(path.name)
        elif min(size) < min_side:
            small.append(f"{path.name} ({size[0]}x{size[1]})")
    if unreadable:
        raise CalibrationError(f"--images: {len(unreadable)} unreadable image(s): "
                               f"{', '.join(unreadable[:5])}")
    if small:
        raise CalibrationError(f"--images: {len(small)} image(s) under {min_side} pixels on a side: "
                               f"{', '.join(small[:5])}")
    if len(paths) < 2:
        raise CalibrationError("--images: calibration needs at least 2 images (one is held back), found "
                               f"{len(paths)}")
    return paths


def _image_size(path: Path) -> tuple[int, int] | None:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    return None if image is None else image.shape[:2]


def load_rgb(path: Path, size: tuple[int, int]) -> np.ndarray:
    return resize_image(cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB), size)


def calibration_layers(depth: int) -> tuple[int, ...]:
    """The default decision layers of a calibrated model: every second block from a quarter of the depth to
    three quarters, (3, 5, 7, 9) for 12 blocks: a token stops soon after it becomes clear. On a CamVid drive
    calibration never saw, the masks agreed with the dense model's on 96.6 % of the pixels at 41 % fewer
    FLOPs, against 96.3 % at 39.5 % with the paper's (3, 6, 9) (docs/results/calibrate)."""
    return tuple(range(max(1, depth // 4), max(1, 3 * depth // 4) + 1, 2))


def prepare_model(source: str | Path, decision_layers: tuple[int, ...] | None) -> DoViTSegmenter:
    """The dense checkpoint, with new (randomly initialised) aux heads when its decision layers are not the
    ones asked (None: ``calibration_layers`` of its depth)."""
    try:
        model = load_checkpoint(source)
    except (CheckpointError, OSError, ValueError) as error:
        raise CalibrationError(f"cannot load {source}: {' '.join(str(error).split())}") from error
    if decision_layers is None:
        decision_layers = calibration_layers(len(model.vit.blocks))
    if tuple(decision_layers) == tuple(model.decision_layers):
        return model
    config = copy.deepcopy(model.config)
    config.decision_layers = tuple(decision_layers)
    try:
        rebuilt = DoViTSegmenter(config, metadata=model.checkpoint_metadata)
    except ValueError as error:
        raise CalibrationError(f"--decision-layers {list(decision_layers)}: {error}") from error
    shapes = {k: v.shape for k, v in rebuilt.state_dict().items()}
    rebuilt.load_state_dict({k: v for k, v in model.state_dict().items()
                             if not k.startswith("aux_heads.") and shapes.get(k) == v.shape}, strict=False)
    return rebuilt


def set_trainable(model: DoViTSegmenter, train: str) -> list[torch.nn.Parameter]:
    """Freeze everything, then unfreeze what ``train`` names; returns the parameters that train."""
    if train not in TRAINABLE:
        raise CalibrationError(f"--train must be one of {', '.join(TRAINABLE)}, got {train!r}")
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    parts = [model.aux_heads]
    if train in ("aux+decoder", "aux+decoder+norms"):
        parts.append(model.decoder)
    if train == "aux+decoder+norms":
        parts += [m for m in model.vit.modules() if isinstance(m, torch.nn.LayerNorm)]
    trainable = [p for part in parts for p in part.parameters()]
    for parameter in trainable:
        parameter.requires_grad_(True)
    return trainable


# ---------------------------------------------------------------------------------------- training
class _Batches:
    """Random zoom-in crops (area 30-100 %, the frame's aspect +-30 %) and flips of the training images (with
    ``colour_shifts``, also the robust preset's colour and camera shifts: the dense model labels the shifted
    view, so the decoder and heads learn to agree with it on photos unlike the calibration images),
    normalised; drawn from (seed, step) so that a resumed run continues the same sequence."""

    def __init__(self, images: list[np.ndarray], config: CalibrateConfig, mean, std) -> None:
        height, width = images[0].shape[:2]
        aspect = width / height
        self.images, self.config, self.mean, self.std = images, config, mean, std
        self.pipeline = A.Compose([
            A.RandomResizedCrop(size=(height, width), scale=(0.3, 1.0), ratio=(aspect / 1.3, aspect * 1.3),
                                p=1.0),
            A.HorizontalFlip(p=0.5), *(robust_photometric() if config.colour_shifts else [])])

    def __call__(self, step: int) -> torch.Tensor:
        rng = np.random.default_rng([self.config.seed, step])
        self.pipeline.set_random_seed(int(rng.integers(2**31)))
        picks = rng.choice(len(self.images), size=min(self.config.batch_size, len(self.images)),
                           replace=False)
        return torch.stack([normalise(self.pipeline(image=self.images[i])["image"], self.mean, self.std)
                            for i in picks])


def _loss(model: DoViTSegmenter, teacher: DoViTSegmenter | None, pixels: torch.Tensor,
          xi: float) -> torch.Tensor:
    """aux: Eq. 10 with the dense argmax as labels, from one dense forward. Otherwise Eq. 10 for the aux heads
    and, for the decoder, only the distillation from the frozen dense model's logits (Eq. 11): where the
    decoder still equals the dense one (xi = 1) that term and its gradient are zero, whereas the cross-entropy
    to the dense argmax (Eq. 9) kept pulling it towards harder answers and moved xi = 1 off the dense
    masks."""
    if teacher is None:
        output = model(pixels, xi=1.0, with_aux=True)
        return dovit_loss(output, output.logits.detach().argmax(1), model.patch_size, beta=0.0)["aux"]
    with torch.no_grad():
        dense_logits = teacher(pixels, xi=1.0).logits
    output = model(pixels, xi=xi, equalise=True)
    parts = dovit_loss(output, dense_logits.argmax(1), model.patch_size, beta=1.0,
                       teacher_logits=dense_logits)
    return parts["aux"] + parts["sd"]


def _learning_rate(config: CalibrateConfig, elapsed_s: float) -> float:
    """Linear warm-up over the first 5 % of the time, then cosine decay to zero at ``minutes``."""
    progress = min(1.0, elapsed_s / (60.0 * config.minutes))
    return config.lr * min(1.0, progress / 0.05) * 0.5 * (1.0 + math.cos(math.pi * progress))


def state_path(output: str | Path) -> Path:
    """Where a run keeps what --resume needs: beside the output folder (which holds only the checkpoint)."""
    output = Path(output)
    return output.with_name(output.name + ".calibrate-state.pt")


def train_heads(model: DoViTSegmenter, images: list[np.ndarray],
                config: CalibrateConfig) -> tuple[int, float]:
    """Train what ``config.train`` names for ``config.minutes``; returns (steps, seconds trained)."""
    trainable = set_trainable(model, config.train)
    teacher = None
    if config.train != "aux":
        teacher = copy.deepcopy(model).eval().requires_grad_(False)
    heads = {id(p) for p in model.aux_heads.parameters()}
    # The new aux heads learn from scratch; the decoder and norms were trained already, so they move slowly.
    groups = [{"params": [p for p in trainable if id(p) in heads], "scale": 1.0},
              {"params": [p for p in trainable if id(p) not in heads], "scale": config.finetune_lr_scale}]
    optimizer = torch.optim.AdamW([g for g in groups if g["params"]], lr=config.lr, weight_decay=0.01)
    step, elapsed = _resume(model, optimizer, config)
    batches = _Batches(images, config, model.config.mean, model.config.std)
    xi_draw = np.random.default_rng([config.seed, 7])
    bar = tqdm(total=round(60 * config.minutes), initial=min(round(elapsed), round(60 * config.minutes)),
               desc=f"calibrate ({config.train})", disable=not config.progress, dynamic_ncols=True,
               bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} s [{elapsed}<{remaining}{postfix}]")
    # Everything stays in eval mode: the backbone runs without drop-path, and the decoder's BatchNorm keeps
    # the dense model's statistics (updated from batches of four crops, they moved even xi = 1 off the dense
    # masks: 96.8 % agreement after 283 steps).
    model.eval()
    last_save = Stopwatch()
    while elapsed < 60.0 * config.minutes:
        start = Stopwatch()
        for group in optimizer.param_groups:
            group["lr"] = _learning_rate(config, elapsed) * group.get("scale", 1.0)
        xi = 1.0 if xi_draw.random() < 0.25 else float(xi_draw.uniform(*config.xi_range))
        loss = _loss(model, teacher, batches(step), xi)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        step += 1
        spent = start.seconds()
        elapsed += spent
        bar.update(min(spent, max(0.0, 60 * config.minutes - bar.n)))
        bar.set_postfix(step=step, loss=f"{loss.item():.3f}")
        if last_save.seconds() > 30.0:
            _save_state(model, optimizer, config, step, elapsed)
            last_save = Stopwatch()
    bar.close()
    model.eval()
    return step, elapsed


def _save_state(model, optimizer, config: CalibrateConfig, step: int, elapsed: float) -> None:
    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step,
             "elapsed": elapsed,
             "source": str(Path(config.source).resolve()), "train": config.train}
    atomic_write(state_path(config.output), lambda handle: torch.save(state, handle))


def _resume(model, optimizer, config: CalibrateConfig) -> tuple[int, float]:
    path = state_path(config.output)
    if not config.resume:
        return 0, 0.0
    if not path.exists():
        raise CalibrationError(f"--resume: {path} does not exist (a run saves it every 30 s)")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if state["source"] != str(Path(config.source).resolve()) or state["train"] != config.train:
        raise CalibrationError(f"--resume: {path} is a run of {state['source']} with --train "
                               f"{state['train']}, not of {config.source} with --train {config.train}")
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    return int(state["step"]), float(state["elapsed"])


# ---------------------------------------------------------------------------------------- choosing xi
def agreement_curve(model: DoViTSegmenter, dense_masks: list[np.ndarray], images: list[np.ndarray],
                    grid=XI_GRID, batch_size: int = 8, progress: bool = True) -> list[XiPoint]:
    """Per xi: mean pixel agreement with ``dense_masks`` and mean share of total FLOPs saved."""
    predictor = Predictor(model)
    curve = []
    for xi in tqdm(grid, desc="choosing xi", disable=not progress, dynamic_ncols=True):
        predictions = predictor.predict_batch(images, xi=xi, batch_size=batch_size, dense=False)
        curve.append(XiPoint(float(xi), float(np.mean([(p.mask == d).mean() for p, d in zip(predictions,
                                                                                            dense_masks,
                                                                                            strict=False)])),
                             float(np.mean([p.trace.flops_saved for p in predictions]))))
    return curve


def pick_xi(curve: list[XiPoint], target_agreement: float) -> float:
    """The xi that saves the most FLOPs among those whose agreement reaches the target (1.0 if none)."""
    meeting = [point for point in curve if point.agreement >= target_agreement]
    return max(meeting, key=lambda point: point.flops_saved).xi if meeting else 1.0


def calibrate(config: CalibrateConfig) -> CalibrationResult:
    """Load, train, pick xi on held-back images, save the DoViT checkpoint with its provenance."""
    if Path(config.output).resolve() == Path(config.source).resolve():
        raise CalibrationError("the output folder is the source checkpoint: write the calibrated model "
                               "elsewhere")
    if not 0.0 < config.target_agreement <= 1.0:
        raise CalibrationError(f"--target-agreement must lie in (0, 1], got {config.target_agreement}")
    if config.minutes <= 0:
        raise CalibrationError(f"--minutes must be positive, got {config.minutes}")
    paths = read_images(config.images, max_images=config.max_images)
    model = prepare_model(config.source, config.decision_layers)
    if not model.decision_layers:
        raise CalibrationError(f"{config.source} has no decision layers, so no token can stop")
    size = tuple(model.config.input_size)
    held_count = max(1, len(paths) // HOLD_OUT_SHARE)
    train, held = paths[:-held_count], paths[-held_count:]
    train_images = [load_rgb(p, size) for p in train]
    held_images = [load_rgb(p, size) for p in held]
    # Before training the model is the dense source at xi = 1 (aux heads, new or not, decide nothing there).
    dense_masks = [p.mask for p in Predictor(model).predict_batch(held_images, xi=1.0, dense=False)]
    steps, seconds = train_heads(model, train_images, config)
    curve = agreement_curve(model, dense_masks, held_images, progress=config.progress)
    model.config.default_xi = pick_xi(curve, config.target_agreement)
    reference_images = (held_images + train_images)[:64]
    reference = measure_range(Predictor(model), reference_images,
                              f"{len(reference_images)} calibration images",
                              progress=False)
    metadata = {
        "stage": "calibrated", "step": steps,
        "calibration": {"source": str(config.source), "images": str(config.images), "image_count": len(paths),
                        "held_out_images": len(held), "minutes": config.minutes, "seconds_trained": seconds,
                        "train": config.train, "decision_layers": list(model.decision_layers),
                        "lr": config.lr, "finetune_lr_scale": config.finetune_lr_scale,
                        "target_agreement": config.target_agreement, "default_xi": model.config.default_xi,
                        "colour_shifts": config.colour_shifts,
                        "curve": [asdict(point) for point in curve]},
        "source_metadata": {k: v for k, v in model.checkpoint_metadata.items() if k in ("stage", "val",
                                                                                        "converted_from",
                                                                                      "format", "step")},
        METADATA_KEY: reference.to_dict(),
        # a converted source's origin stays where the studio header and dovit.train look for it
        **{k: v for k, v in model.checkpoint_metadata.items() if k in ("converted_from", "format")},
    }
    save_checkpoint(model, config.output, metadata=metadata)
    state_path(config.output).unlink(missing_ok=True)
    return CalibrationResult(Path(config.output), model.config.default_xi, steps, seconds, len(train),
                             len(held), curve)
