"""Training a dense teacher or a DoViT student (Eq. 9-12), on one process or under torchrun (DDP).

    dense: L = CE(decoder) + alpha * sum_l CE(aux head l)                 (SETR's auxiliary losses)
    dovit: L = CE + alpha * L_AH + beta * KL(p_s || p_t)                  (Eq. 9-12), token pass at xi

``train(TrainConfig(...))`` runs one; ``python -m dovit.train`` parses its flags into the config.
"""
from __future__ import annotations

import json
import math
import os
import random
import sys
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.distributed as dist
from safetensors.torch import save_file
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import AveragedModel
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

from ..core.checkpoint import CheckpointError, atomic_write, load_checkpoint, save_checkpoint
from ..core.config import ModelConfig
from ..core.hybrid import ReleasedTeacher, load_released_espnetv2
from ..core.model import DoViTSegmenter
from ..core.stopwatch import Stopwatch
from ..core.token_pass import check_xi
from ..data import (
    DEFAULT_DATA_ROOT,
    IGNORE_INDEX,
    EvalTransform,
    TrainAugment,
    balanced_class_weights,
    build_dataset,
    class_frequencies,
)
from ..evaluation.xi_sweep import XiEvaluation, evaluate_model
from .losses import dovit_loss, unlabelled_distillation
from .presets import preset_config

STATE_NAME = "train_state.pt"
DEFAULT_INPUT_SIZE = (360, 480)  # CamVid's frames
DEFAULT_XI = 0.95
# --fit-minutes times steps FIT_SKIP_STEPS..FIT_MEASURE_STEPS of a run (the first compile kernels, fill
# loaders).
FIT_SKIP_STEPS, FIT_MEASURE_STEPS = 10, 40
SOURCE_KEYS = ("converted_from", "format")  # written by dovit.convert
PRESET_FIELDS = ("backbone", "decision_layers", "decoder", "decoder_channels", "mean", "std", "default_xi")


class SetupError(ValueError):
    """A flag, file or data-set choice that a run cannot start with; main() prints it as one line (exit 2)."""


@dataclass
class TrainConfig:
    """Everything a training run reads (``python -m dovit.train``'s flags; see its --help for each)."""

    stage: str  # "dense" (the teacher) or "dovit" (the student)
    output: str
    # the data set
    dataset: str = "camvid"
    data_root: str = DEFAULT_DATA_ROOT
    train_split: str = "train"
    val_split: str = "val"
    train_sequences: list[str] | None = None
    val_sequences: list[str] | None = None
    # the model
    preset: str | None = None
    backbone: str | None = None
    stem: str | None = None
    decoder: str | None = None
    decoder_channels: int | None = None
    decision_layers: list[int] | None = None
    no_merge: bool = False
    pretrained: str | None = None
    init: str | None = None
    init_weights: str | None = None
    stem_weights: str | None = None
    freeze_stem: bool = False
    pretrained_lr_scale: float = 1.0
    released_teacher: str | None = None
    gamma: float = 0.5
    # what trains it (Eq. 9-12)
    teacher: str | None = None
    xi: float = DEFAULT_XI
    xi_range: list[float] | None = None
    dense_fraction: float = 0.0
    label_smoothing: float = 0.0
    alpha: float = 1.0
    beta: float = 0.4
    # input size and augmentation
    input_size: list[int] = field(default_factory=lambda: list(DEFAULT_INPUT_SIZE))
    crop_size: list[int] | None = None
    scale_range: list[float] = field(default_factory=lambda: [0.5, 2.0])
    jitter: float = 0.3
    camera_aug: float = 0.0
    augment: str = "standard"
    # optimisation and schedule
    ema: float = 0.0
    steps: int = 10000
    batch_size: int = 8
    lr: float = 5e-4
    min_lr: float = 1e-6
    weight_decay: float = 0.05
    warmup_steps: int = 300
    schedule: str = "cosine"
    drop_path: float = 0.1
    class_weight_power: float = 0.0
    amp: str = "auto"
    max_minutes: float | None = None
    fit_minutes: float | None = None
    # checkpoints, validation and the process
    default_xi: float | None = None
    eval_every: int = 500
    save_every: int = 250
    max_val_images: int | None = None
    workers: int = 1
    threads: int | None = None
    seed: int = 0
    resume: bool = False
    allow_fresh: bool = False
    no_progress: bool = False
    dump_rank_weights: bool = False


def check_config(config: TrainConfig) -> None:
    """Refuse, before anything loads, what no run can start with (SetupError, one line)."""
    if config.stage == "dovit":
        try:
            check_xi(config.xi)
        except ValueError as error:
            raise SetupError(f"--{error}") from None
    if config.xi_range and not 0.0 <= config.xi_range[0] <= config.xi_range[1] <= 1.0:
        raise SetupError(f"--xi-range needs 0 <= LO <= HI <= 1, got {config.xi_range}")
    if not 0.0 <= config.dense_fraction <= 1.0:
        raise SetupError(f"--dense-fraction must lie in [0, 1], got {config.dense_fraction}")
    if config.init and config.init_weights:
        raise SetupError("use --init (whole checkpoint, its config) or --init-weights (matching tensors), "
                         "not both")
    if config.preset and config.init:
        raise SetupError("--preset describes a new model and --init loads a whole checkpoint (its own "
                         "architecture): use one")
    if config.pretrained not in (None, "hub") and not Path(config.pretrained).is_file():
        raise SetupError(f"--pretrained: no such file: {config.pretrained} (a local timm weights file, "
                         ".safetensors or .pth; --pretrained hub downloads timm's weights when online)")


# ---------------------------------------------------------------------------------------- setup
def lr_factor(step: int, warmup_steps: int, total_steps: int, lr: float, min_lr: float,
              schedule: str) -> float:
    """Multiplier of the peak learning rate at ``step``: linear warm-up, then cosine or poly decay to
    min_lr."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    floor = min_lr / lr
    decay = 0.5 * (1 + math.cos(math.pi * progress)) if schedule == "cosine" else (1 - progress) ** 0.9
    return floor + (1 - floor) * decay


def model_config(args: TrainConfig, info) -> ModelConfig:
    """The flags that describe the architecture, over the preset's fields (--preset), over ModelConfig's
    defaults: a flag left out keeps the preset's value, else the default. The classes are the data set's."""
    fields = {k: v for k, v in preset_config(args.preset).items()
              if k in PRESET_FIELDS} if args.preset else {}
    chosen = {"backbone": args.backbone, "decoder": args.decoder, "decoder_channels": args.decoder_channels,
              "stem": args.stem, "decision_layers": args.decision_layers}
    fields.update({k: v for k, v in chosen.items() if v is not None})
    return ModelConfig(
        num_classes=info.num_classes, merge_stopped=not args.no_merge, input_size=tuple(args.input_size),
        class_names=info.class_names, class_colors=info.class_colors, drop_path_rate=args.drop_path,
        ignore_index=IGNORE_INDEX, **fields,
    )


def build_student(args: TrainConfig, info) -> DoViTSegmenter:
    """The model to train: a whole DoViT checkpoint (--init), else the flags' (and preset's) architecture with
    random or ImageNet (--pretrained) backbone weights."""
    if args.init:
        model = load_checkpoint(args.init)
        if model.config.num_classes != info.num_classes:  # e.g. a converted ADE20K model on CamVid labels
            raise ValueError(f"{args.init} predicts {model.config.num_classes} classes, the data set has "
                             f"{info.num_classes}: train from a checkpoint of the data set's classes")
        model.config.merge_stopped = not args.no_merge
        return model
    pretrained = True if args.pretrained == "hub" else args.pretrained
    return DoViTSegmenter(model_config(args, info), pretrained=pretrained)


def copy_matching_weights(model: DoViTSegmenter, source: DoViTSegmenter) -> dict[str, list[str]]:
    """Load source tensors into model where name and shape agree; return what was copied and what was not."""
    target_shapes = {k: v.shape for k, v in model.state_dict().items()}
    matching = {k: v for k, v in source.state_dict().items() if target_shapes.get(k) == v.shape}
    missing = model.load_state_dict(matching, strict=False).missing_keys
    return {"copied": list(matching), "kept_random": missing}


def build_datasets(args: TrainConfig):
    """(train, val or None), without transforms yet (they need the model's normalisation): see set_transforms.

    --val-sequences without --train-sequences holds those recordings out of training.
    """
    if args.dataset == "synthetic":
        from ..data.synthetic import synthetic_dataset

        size = tuple(args.input_size)
        return synthetic_dataset(64, size, seed=args.seed), synthetic_dataset(8, size, seed=args.seed + 1)
    held_out = args.val_sequences if args.val_split and not args.train_sequences else None
    train_set = build_dataset(args.dataset, args.data_root, args.train_split, sequences=args.train_sequences,
                              exclude_sequences=held_out)
    val_set = (build_dataset(args.dataset, args.data_root, args.val_split, sequences=args.val_sequences)
               if args.val_split else None)
    return train_set, val_set


def set_transforms(train_set, val_set, args: TrainConfig, config: ModelConfig) -> None:
    """Training augmentation and the evaluation resize, normalised as the model expects."""
    crop = tuple(args.crop_size or args.input_size)
    train_set.transform = TrainAugment(crop, config.mean, config.std, tuple(args.scale_range), args.jitter,
                                       args.camera_aug, preset=args.augment)
    if val_set is not None:
        val_set.transform = EvalTransform(tuple(args.input_size), config.mean, config.std)


class Logger:
    """Rank 0 writes JSON lines (log.jsonl) and a readable train.log; other ranks stay silent."""

    def __init__(self, output: Path, enabled: bool) -> None:
        self.enabled = enabled
        self.output = output

    def __call__(self, record: dict) -> None:
        if not self.enabled:
            return
        with open(self.output / "log.jsonl", "a") as handle:
            handle.write(json.dumps(record) + "\n")
        text = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in record.items())
        with open(self.output / "train.log", "a") as handle:
            handle.write(text + "\n")


def _init_distributed() -> tuple[int, int, torch.device]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1, torch.device("cuda" if torch.cuda.is_available() else "cpu")
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    dist.init_process_group(backend)
    rank = dist.get_rank()
    if torch.cuda.is_available():
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        return rank, world, torch.device("cuda", local)
    return rank, world, torch.device("cpu")


def _autocast(amp: str, device: torch.device):
    enabled = amp == "bf16" or (amp == "auto" and device.type == "cuda")
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled)


def _class_weights(power: float, train_set, device: torch.device) -> torch.Tensor | None:
    if not power or not hasattr(train_set, "load_label"):
        return None
    weights = balanced_class_weights(class_frequencies(train_set), power)
    return torch.tensor(weights, dtype=torch.float32, device=device)


def _worker_init(worker_id: int) -> None:
    # OpenCV starts a thread per core in every worker by default; many workers then starve the main
    # process that feeds the GPU. One thread per worker: the workers are the parallelism.
    cv2.setNumThreads(1)


class ScheduleFit:
    """--fit-minutes: time steps FIT_SKIP_STEPS..FIT_MEASURE_STEPS after the start, then say how many steps
    fit in the budget (counted from the start of the loop, so the untimed warm-up is paid for too)."""

    def __init__(self, minutes: float, start_step: int) -> None:
        self.budget_s, self.start_step = 60.0 * minutes, start_step
        self.loop_start = Stopwatch()
        self.timer_start: Stopwatch | None = None
        self.rate, self.step = 0.0, start_step  # steps per second and the step they were measured at

    def observe(self, step: int) -> bool:
        """Call after each step; True once the rate is measured (then call ``total_steps``)."""
        done = step - self.start_step
        if done == FIT_SKIP_STEPS:
            self.timer_start = Stopwatch()
        if done < FIT_MEASURE_STEPS or self.timer_start is None:
            return False
        self.rate = (done - FIT_SKIP_STEPS) / max(self.timer_start.seconds(), 1e-9)
        self.step = step
        return True

    def total_steps(self, requested: int) -> int:
        """The schedule's length: the steps that fit in what is left of the budget, at most ``requested``."""
        left_s = self.budget_s - self.loop_start.seconds()
        return max(self.step, min(requested, self.step + int(self.rate * max(left_s, 0.0))))


def _agreed(value: int, world: int, device: torch.device) -> int:
    """Rank 0's value on every rank (so DDP ranks stop at the same step)."""
    if world == 1:
        return value
    tensor = torch.tensor([value], device=device, dtype=torch.int64)
    dist.broadcast(tensor, src=0)
    return int(tensor.item())


def _past_deadline(clock: Stopwatch, deadline_s: float, world: int, device: torch.device) -> bool:
    """True once rank 0's ``clock`` passes ``deadline_s``; all ranks agree, so none waits on a collective
    alone."""
    return bool(_agreed(int(clock.seconds() > deadline_s), world, device))


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def weight_average(model: DoViTSegmenter, decay: float) -> AveragedModel | None:
    """EMA of the weights and buffers (torch's AveragedModel), or None when decay is 0.

    The decay ramps up as min(decay, (1 + n) / (10 + n)) after n updates (as timm's ModelEmaV2 warm-up),
    so a short run's average is not dominated by the initial weights.
    """
    if not decay:
        return None

    @torch.no_grad()
    def ema_update(averaged: list[torch.Tensor], current: list[torch.Tensor], updates) -> None:
        weight = 1.0 - min(decay, (1.0 + int(updates)) / (10.0 + int(updates)))
        floats = [(a, c) for a, c in zip(averaged, current, strict=False) if a.is_floating_point()]
        if floats:
            torch._foreach_lerp_([a for a, _ in floats], [c for _, c in floats], weight)
        # counters (BatchNorm's num_batches_tracked) follow the model
        for a, c in zip(averaged, current, strict=False):
            if not a.is_floating_point():
                a.copy_(c)

    return AveragedModel(model, multi_avg_fn=ema_update, use_buffers=True)


@dataclass
class Run:
    """What a training run holds between steps; built by ``setup``."""

    args: TrainConfig
    rank: int
    world: int
    device: torch.device
    output: Path
    log: Logger
    model: DoViTSegmenter
    net: torch.nn.Module  # the model, wrapped in DDP when world > 1
    teacher: DoViTSegmenter | None
    ema: AveragedModel | None
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    train_set: object
    val_set: object
    class_weights: torch.Tensor | None
    step: int = 0
    best: dict = field(default_factory=lambda: {"miou": -1.0, "step": -1})
    source: dict = field(default_factory=dict)  # a converted --init checkpoint's origin, kept in every save
    # [total steps]: read by the LR lambda, cut by --fit-minutes
    schedule_steps: list = field(default_factory=list)
    fitted: bool = False  # --fit-minutes has set schedule_steps (kept across --resume)
    released: ReleasedTeacher | None = None  # --released-teacher: distilled on Unlabelled pixels

    @property
    def shipped(self) -> DoViTSegmenter:
        """The weights that are validated and saved: the EMA when on, else the trained model."""
        return self.ema.module if self.ema is not None else self.model


def setup(args: TrainConfig) -> Run:
    """Processes, data, model (and teacher, EMA), optimiser and schedule; resumes when asked."""
    rank, world, device = _init_distributed()
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed crop size: let cuDNN pick its fastest convolutions
        # fp32 matmuls outside autocast (validation) on tensor cores
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    if args.threads:
        torch.set_num_threads(args.threads)
    output = Path(args.output)
    log = Logger(output, rank == 0)

    # Everything the flags name (drives, files, architecture) is built first; what cannot be is a SetupError.
    with _setup_errors("--val-sequences / --train-sequences / --data-root"):
        train_set, val_set = build_datasets(args)
    # The model is built with the same seed on every rank, so all ranks start identical.
    torch.manual_seed(args.seed)
    with _setup_errors("--init" if args.init else "--pretrained" if args.pretrained else "the model flags"):
        model = build_student(args, train_set.info)
    with _setup_errors("--init-weights"):
        init_report = copy_matching_weights(model,
                                            load_checkpoint(args.init_weights)) if args.init_weights else None
    with _setup_errors("--stem-weights"):
        _prepare_stem(model, args)
    if args.default_xi is not None or args.stage == "dovit":
        model.config.default_xi = args.default_xi if args.default_xi is not None else args.xi
    model.to(device)
    teacher = _load_teacher(args, model, device)
    released = None
    if args.released_teacher:
        with _setup_errors("--released-teacher"):
            released = ReleasedTeacher(args.released_teacher, model.config.class_names).to(device)
    if rank == 0:
        output.mkdir(parents=True, exist_ok=True)  # only once the flags proved usable
    set_transforms(train_set, val_set, args, model.config)
    _seed_everything(args.seed + rank)
    optimizer, scheduler, schedule_steps = _optimiser(args, model)
    source = {k: v for k, v in model.checkpoint_metadata.items() if k in SOURCE_KEYS} if args.init else {}
    run = Run(args, rank, world, device, output, log, model,
              DistributedDataParallel(model) if world > 1 else model, teacher,
              weight_average(model, args.ema),
              optimizer, scheduler, train_set, val_set,
              _class_weights(args.class_weight_power, train_set, device), source=source,
              schedule_steps=schedule_steps, released=released)
    _resume(run)
    if rank == 0:
        _log_start(run, init_report)
    return run


def _load_teacher(args: TrainConfig, model: DoViTSegmenter, device: torch.device) -> DoViTSegmenter | None:
    """The frozen teacher of self-distillation (stage dovit with --teacher and beta > 0), else None."""
    if not (args.stage == "dovit" and args.teacher and args.beta > 0):
        return None
    with _setup_errors("--teacher"):
        teacher = load_checkpoint(args.teacher)
        if teacher.config.num_classes != model.config.num_classes:
            raise ValueError(f"{args.teacher} predicts {teacher.config.num_classes} classes, the student "
                             f"{model.config.num_classes}")
    teacher = teacher.to(device).eval()
    for parameter in teacher.parameters():
        parameter.requires_grad_(False)
    return teacher


def _optimiser(args: TrainConfig, model: DoViTSegmenter
               ) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR, list]:
    """AdamW (no weight decay on norms, biases and embeddings) and its warm-up + decay schedule, whose length
    (the returned one-item list) --fit-minutes may cut."""
    optimizer = torch.optim.AdamW(_parameter_groups(model, args), lr=args.lr)
    schedule_steps = [args.steps]  # the schedule's length: --steps, or fewer once --fit-minutes has measured
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(
        step, args.warmup_steps, schedule_steps[0], args.lr, args.min_lr, args.schedule))
    return optimizer, scheduler, schedule_steps


# The released encoder's and decoder's weights in a hybrid model (--pretrained-lr-scale).
PRETRAINED_PREFIXES = ("vit.patch_embed.encoder.", "decoder.decoder.")


def _parameter_groups(model: DoViTSegmenter, args: TrainConfig) -> list[dict]:
    """AdamW groups: no weight decay on norms, biases and embeddings; the hybrid's released weights at
    --pretrained-lr-scale times the rate, so a rate that suits new blocks does not wash out what they know."""
    groups: dict[tuple[bool, bool], list] = {}
    for name, parameter in model.named_parameters():
        no_decay = parameter.ndim <= 1 or "pos_embed" in name or "cls_token" in name
        groups.setdefault((no_decay, name.startswith(PRETRAINED_PREFIXES)), []).append(parameter)
    return [{"params": params, "weight_decay": 0.0 if no_decay else args.weight_decay,
             "lr": args.lr * (args.pretrained_lr_scale if pretrained else 1.0)}
            for (no_decay, pretrained), params in sorted(groups.items())]


def _prepare_stem(model: DoViTSegmenter, args: TrainConfig) -> None:
    """--stem-weights: the released encoder and decoder into a new hybrid; --freeze-stem: keep the encoder."""
    if args.stem_weights:
        if model.config.stem != "espnetv2":
            raise ValueError("--stem-weights loads a released ESPNetv2: use it with --stem espnetv2")
        load_released_espnetv2(model, args.stem_weights)
    if args.freeze_stem:
        if model.config.stem != "espnetv2":
            raise ValueError("--freeze-stem keeps a pretrained encoder: the model has none (--stem espnetv2)")
        model.vit.patch_embed.freeze_encoder()


def _log_start(run: Run, init_report: dict | None) -> None:
    args, train_set, val_set = run.args, run.train_set, run.val_set
    weights = None if run.class_weights is None else [round(w, 4) for w in run.class_weights.tolist()]
    run.log({"event": "start", "stage": args.stage, "world_size": run.world, "step": run.step,
             "steps": args.steps,
             "train_images": len(train_set), "val_images": len(val_set) if val_set is not None else 0,
             "train_sequences": getattr(train_set, "sequences", None),
             "val_sequences": getattr(val_set, "sequences", None),
             "init_weights": init_report and {"copied": len(init_report["copied"]),
                                              "kept_random": init_report["kept_random"]},
             "class_weights": weights, "config": json.dumps(run.model.config.to_dict()),
             "args": json.dumps(asdict(args))})


@contextmanager
def _setup_errors(what: str):
    """Re-raise what the user's flags caused (a bad value, a missing file, an unreadable checkpoint) as a
    SetupError naming the flag; main() prints it as one line. Bugs elsewhere keep their tracebacks."""
    try:
        yield
    except (ValueError, OSError, CheckpointError) as error:  # OSError: missing files, no network for 'hub'
        message = " ".join(str(error).split()) or type(error).__name__
        raise SetupError(f"{what}: {message}") from error


def _resume(run: Run) -> None:
    """--resume: weights, optimiser, schedule, step, best score, RNG (and the EMA) from OUTPUT/train_state.pt.

    Says what it resumes from. Refuses (one line on stderr, exit code 2) when there is no state, unless
    --allow-fresh, and when the state cannot be read or does not fit the model that the flags describe.
    """
    args, model, optimizer, scheduler, output = run.args, run.model, run.optimizer, run.scheduler, run.output
    state_path = output / STATE_NAME

    def refuse(reason: str) -> None:
        if run.rank == 0:
            print(f"error: --resume: {' '.join(reason.split())[:500]}", file=sys.stderr, flush=True)
        raise SystemExit(2)

    if not args.resume:
        return
    if not state_path.exists():
        if not args.allow_fresh:
            refuse(f"{state_path} does not exist, so there is nothing to resume (a run killed before its "
                   f"first save, every --save-every {args.save_every} steps, leaves none); pass "
                   "--allow-fresh to start from step 0")
        if run.rank == 0:
            print(f"--resume: no {STATE_NAME} in {output} yet; starting from step 0 (--allow-fresh)",
                  flush=True)
        run.log({"event": "fresh_start", "reason": f"no {STATE_NAME}"})
        return
    try:
        # weights_only=True: tensors and plain containers only, never arbitrary pickled code.
        state = torch.load(state_path, map_location="cpu", weights_only=True)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if "schedule_steps" in state:  # a --fit-minutes run keeps its fitted length
            run.schedule_steps[0], run.fitted = int(state["schedule_steps"]), True
        if run.ema is not None and "ema" in state:
            run.ema.load_state_dict(state["ema"])
        step, best = int(state["step"]), dict(state["best"])
        torch.set_rng_state(state["torch_rng"])
    except Exception as error:  # a damaged file, or a state saved with other model flags
        refuse(f"cannot resume from {state_path}: {type(error).__name__}: {error}")
    run.step, run.best = step, best
    if run.rank == 0:
        print(f"--resume: continuing from {state_path} at step {step} of {args.steps} "
              f"(best val mIoU {best['miou']:.4g} at step {best['step']})", flush=True)
    run.log({"event": "resume", "step": step})


def train_step(run: Run, pixels: torch.Tensor, labels: torch.Tensor, step_xi: float):
    """One optimiser step at threshold step_xi (Eq. 12 loss); returns the loss parts and the forward's
    output."""
    args = run.args
    teacher_logits = None
    with _autocast(args.amp, run.device):
        if run.teacher is not None:
            with torch.no_grad():
                teacher_logits = run.teacher(pixels, xi=1.0).logits
        out = run.net(pixels, xi=step_xi, equalise=True)
    parts = dovit_loss(out, labels, run.model.patch_size, args.alpha, args.beta, teacher_logits,
                       run.class_weights, args.label_smoothing)
    if run.released is not None:
        with torch.no_grad():
            released_logits = run.released(pixels)
        parts["unlabelled_kd"] = unlabelled_distillation(out.logits, released_logits, labels)
        parts["loss"] = parts["loss"] + args.gamma * parts["unlabelled_kd"]
    run.optimizer.zero_grad(set_to_none=True)
    parts["loss"].backward()
    torch.nn.utils.clip_grad_norm_(run.model.parameters(), 1.0)
    run.optimizer.step()
    run.scheduler.step()
    if run.ema is not None:
        run.ema.update_parameters(run.model)
    run.step += 1
    return parts, out


# ---------------------------------------------------------------------------------------- loop
def train(args: TrainConfig) -> dict:
    """setup -> (step -> validate-or-save)* -> final save; returns the last step and the best validation."""
    run = setup(args)
    rank, world, device, log = run.rank, run.world, run.device, run.log
    sampler, loader = _loader(run)
    xi = args.xi if args.stage == "dovit" else 1.0
    # the same on every rank, so DDP ranks keep equal-length batches
    xi_draw = random.Random(args.seed + run.step)
    bar = tqdm(total=args.steps, initial=run.step, desc=f"{args.stage}",
               disable=args.no_progress or rank != 0,
               dynamic_ncols=True)
    epoch = run.step * args.batch_size * world // max(1, len(run.train_set))
    run.model.train()
    window_start, window_images, window_wait = Stopwatch(), 0, 0.0
    clock, deadline = Stopwatch(), None if args.max_minutes is None else 60.0 * args.max_minutes
    final_step = run.schedule_steps[0]
    fit = None if args.fit_minutes is None or run.fitted else ScheduleFit(args.fit_minutes, run.step)
    while run.step < final_step:
        if sampler is not None:
            sampler.set_epoch(epoch)
        fetch_start = Stopwatch()
        for pixels, labels in loader:
            window_wait += fetch_start.seconds()  # time the GPU/CPU step waited for data
            if run.step >= final_step:
                break
            pixels, labels = pixels.to(device, non_blocking=True), labels.to(device, non_blocking=True)
            step_xi = _draw_xi(xi_draw, xi, args.stage, args.dense_fraction, args.xi_range)
            parts, out = train_step(run, pixels, labels, step_xi)
            step = run.step
            if fit is not None and fit.observe(step):
                fitted = _agreed(fit.total_steps(args.steps), world, device)
                log({"event": "fit", "step": step, "steps_per_s": fit.rate, "steps": fitted,
                     "requested_steps": args.steps, "fit_minutes": args.fit_minutes})
                run.schedule_steps[0], run.fitted, final_step, fit = fitted, True, fitted, None
                bar.total = fitted
                bar.refresh()
            if deadline is not None and final_step > step and _past_deadline(clock, deadline, world, device):
                final_step = step  # --max-minutes: this step is the last one (validated and saved below)
                log({"event": "time_limit", "step": step, "max_minutes": args.max_minutes})
            window_images += pixels.shape[0] * world
            bar.update(1)
            kept = (out.group_tokens[:, -1].float().mean() / out.group_tokens[:, 0].float().mean()).item()
            bar.set_postfix(loss=f"{parts['loss'].item():.3f}", kept=f"{kept:.2f}")
            if step % 10 == 0 or step == final_step:
                elapsed = window_start.seconds()
                log({"step": step, "epoch": epoch, "lr": run.scheduler.get_last_lr()[0], "xi": step_xi,
                     **{k: float(v.item()) for k, v in parts.items()}, "kept_last_group": kept,
                     "images_per_s": window_images / max(elapsed, 1e-9),
                     "data_wait_frac": window_wait / max(elapsed, 1e-9)})
                window_start, window_images, window_wait = Stopwatch(), 0, 0.0
            _validate_or_save(run, xi, final_step)
            fetch_start = Stopwatch()
        epoch += 1
    bar.close()
    _finish(run)
    return {"step": run.step, "best": run.best}


def _loader(run: Run) -> tuple[DistributedSampler | None, DataLoader]:
    """The training batches: shuffled with --seed, split over the ranks under DDP."""
    args, world = run.args, run.world
    sampler = (DistributedSampler(run.train_set, num_replicas=world, rank=run.rank, shuffle=True,
                                  seed=args.seed)
               if world > 1 else None)
    loader = DataLoader(run.train_set, batch_size=args.batch_size, shuffle=sampler is None, sampler=sampler,
                        num_workers=args.workers, drop_last=True,
                        generator=torch.Generator().manual_seed(args.seed + run.step),
                        persistent_workers=args.workers > 0, pin_memory=run.device.type == "cuda",
                        worker_init_fn=_worker_init)
    return sampler, loader


def _finish(run: Run) -> None:
    """After the last step: agree on buffers across ranks, save the final state, log done, end DDP."""
    args, rank, world = run.args, run.rank, run.world
    if world > 1:
        # DDP broadcasts rank 0's buffers (BatchNorm running statistics) at the start of every forward, so
        # after the last step each rank still holds its own last update: adopt rank 0's, as the next forward
        # would.
        for buffer in run.shipped.buffers():
            dist.broadcast(buffer, src=0)
    if args.dump_rank_weights:
        run.output.mkdir(parents=True, exist_ok=True)  # rank 0 may not have created it yet
        save_file({name: tensor.detach().cpu().contiguous()
                   for name, tensor in run.shipped.state_dict().items()},
                  str(run.output / f"rank{rank}.safetensors"))
    if rank == 0:
        _save_state(run)
        run.log({"event": "done", "step": run.step, "best_miou": run.best["miou"],
                 "best_step": run.best["step"]})
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()


def _validate_or_save(run: Run, xi: float, final_step: int) -> None:
    """Rank 0: validate every --eval-every steps and at the end, then write last/ every --save-every steps.

    Validation comes first, so that a resumed run knows the best score already written to best/; the
    final save follows the loop.
    """
    args, step = run.args, run.step
    if run.rank != 0:
        return
    if run.val_set is not None and ((args.eval_every and step % args.eval_every == 0) or step == final_step):
        run.best = _validate(run, xi)
        run.model.train()
    if step % args.save_every == 0 and step < final_step:
        _save_state(run)


def _draw_xi(draw: random.Random, xi: float, stage: str, dense_fraction: float,
             xi_range: tuple[float, float] | None) -> float:
    """This step's threshold: 1.0 (dense) for a --dense-fraction share of steps, else --xi-range or --xi."""
    if stage != "dovit":
        return 1.0
    if dense_fraction > 0.0 and draw.random() < dense_fraction:
        return 1.0
    return draw.uniform(*xi_range) if xi_range else xi


def _validate(run: Run, xi: float) -> dict:
    """Score the shipped weights on the validation set at xi; write best/ when they beat run.best."""
    args, step, best = run.args, run.step, run.best
    result = evaluate_model(run.shipped, run.val_set, [xi], args.max_val_images, progress=False,
                            device=run.device, throughput_images=0)[0]
    run.log({"event": "val", "step": step, "xi": xi, "miou": result.miou, "pa": result.pa, "mpa": result.mpa,
             "per_class_iou": result.per_class_iou, "backbone_gflops": result.backbone_gflops,
             "dense_backbone_gflops": result.dense_backbone_gflops})
    if result.miou > best["miou"]:
        best = {"miou": result.miou, "step": step}
        save_checkpoint(run.shipped, run.output / "best", metadata=_metadata(args, step, result, run.source))
    return best


def _metadata(args, step: int, val: XiEvaluation | None = None, source: dict | None = None) -> dict:
    """What a saved checkpoint records: stage, step, command and flags, validation, and (source) where a
    converted --init checkpoint came from (``converted_from``, ``format``: the studio shows them)."""
    meta = {"stage": args.stage, "step": step, "command": "python -m dovit.train " + " ".join(sys.argv[1:]),
            "args": asdict(args), **(source or {})}
    if val is not None:
        meta["val"] = {k: getattr(val, k) for k in ("xi", "miou", "pa", "mpa", "backbone_gflops",
                                                   "dense_backbone_gflops")}
    return meta


def _save_state(run: Run) -> None:
    """last/ (the shipped weights) and OUTPUT/train_state.pt (everything --resume needs).

    Each is written whole, fsynced and renamed into place, so a kill at any moment leaves the previous or
    the new version of each, never a part (a kill between the two leaves last/ one save ahead of the state).
    """
    model, optimizer, scheduler, step, best, output, args = (run.model, run.optimizer, run.scheduler,
                                                             run.step,
                                                            run.best, run.output, run.args)
    save_checkpoint(run.shipped, output / "last", metadata=_metadata(args, step, source=run.source))
    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
             "scheduler": scheduler.state_dict(),
             "step": step, "best": best, "torch_rng": torch.get_rng_state()}
    if run.fitted:
        state["schedule_steps"] = run.schedule_steps[0]
    if run.ema is not None:
        state["ema"] = run.ema.state_dict()
    atomic_write(output / STATE_NAME, lambda handle: torch.save(state, handle))
