"""python -m dovit.train: train a dense teacher or a DoViT student (Eq. 9-12); torchrun gives DDP.

    dense: L = CE(decoder) + alpha * sum_l CE(aux head l)                 (SETR's auxiliary losses)
    dovit: L = CE + alpha * L_AH + beta * KL(p_s || p_t)                  (Eq. 9-12), token pass at xi
"""
from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
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

from .checkpoint import CheckpointError, atomic_write, load_checkpoint, save_checkpoint
from .config import DECODERS, ModelConfig
from .data.augment import AUGMENT_PRESETS
from .data import (DATASETS, IGNORE_INDEX, EvalTransform, TrainAugment, balanced_class_weights, build_dataset,
                   class_frequencies)
from .evaluate import XiEvaluation, evaluate_model
from .losses import dovit_loss
from .model import DoViTSegmenter
from .token_pass import check_xi
from .presets import PRESETS, preset_config

STATE_NAME = "train_state.pt"
DEFAULT_INPUT_SIZE = (360, 480)  # CamVid's frames
DEFAULT_XI = 0.95
# --fit-minutes times steps FIT_SKIP_STEPS..FIT_MEASURE_STEPS of a run (the first compile kernels, fill loaders).
FIT_SKIP_STEPS, FIT_MEASURE_STEPS = 10, 40
SOURCE_KEYS = ("converted_from", "format")  # written by dovit.convert
PRESET_FIELDS = ("backbone", "decision_layers", "decoder", "decoder_channels", "mean", "std", "default_xi")


class SetupError(ValueError):
    """A flag, file or data-set choice that a run cannot start with; main() prints it as one line (exit 2)."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m dovit.train",
        description="Train a DoViT segmenter. Stage 'dense' trains the teacher (no token pass, CE on the decoder "
        "and the aux heads); stage 'dovit' trains the student with token pass at --xi and the loss "
        "CE + alpha*L_AH + beta*KL(student || dense teacher) (paper Eq. 9-12). --preset NAME starts from one "
        "of the paper's models (SETR or Segmenter on ViT-T/S/B/L, ADE20K or Cityscapes settings); flags given "
        "explicitly override its fields. Run under `torchrun --nproc_per_node K` for DistributedDataParallel "
        "(gloo on CPU, NCCL on GPU). Bad flags, files or drives exit with code 2 and one line on stderr.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add = parser.add_argument
    add("--stage", choices=["dense", "dovit"], required=True, help="what to train")
    add("--output", required=True, help="run folder: checkpoints (last/, best/), train_state.pt, log.jsonl")
    _data_flags(parser)
    _model_flags(parser)
    _objective_flags(parser)
    _input_flags(parser)
    _optimisation_flags(parser)
    _run_flags(parser)
    args = parser.parse_args(argv)
    if args.preset is not None and args.preset not in PRESETS:
        parser.error(f"--preset: unknown preset {args.preset!r}; choose one of: {', '.join(PRESETS)}")
    preset = preset_config(args.preset) if args.preset else {}
    if args.input_size is None:
        args.input_size = list(preset.get("input_size", DEFAULT_INPUT_SIZE))
    if args.xi is None:
        args.xi = preset.get("default_xi", DEFAULT_XI)
    return args


def _data_flags(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument_group("the data set").add_argument
    add("--dataset", choices=sorted(DATASETS) + ["synthetic"], default="camvid",
        help="data set layout ('synthetic': random shapes, for tests)")
    add("--data-root", default="../shared/data/camvid", help="data set root folder")
    add("--train-split", default="train", help="split to train on")
    add("--val-split", default="val", help="split used to select the best checkpoint ('' = none)")
    add("--train-sequences", nargs="+", default=None, metavar="SEQ",
        help="train only on these recordings (file-name prefix: CamVid drives 0001TP 0006R0 0016E5); "
        "splits join with '+', e.g. --train-split train+val")
    add("--val-sequences", nargs="+", default=None, metavar="SEQ",
        help="validate only on these recordings, and (unless --train-sequences is given) leave them out of "
        "training: e.g. --train-split train+val --val-split train+val --val-sequences 0006R0 scores streets "
        "the model never saw")


def _model_flags(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument_group("the model").add_argument
    add("--preset", default=None, metavar="NAME",
        help="build the model from a paper preset, {setr|segmenter}_vit_{t|s|b|l}_{ade20k|cityscapes} (e.g. "
        "segmenter_vit_s_ade20k; list: dovit.PRESETS): its backbone (timm vit_*_patch16_384), decision layers "
        "((3 6 9) for 12 blocks, (6 12 18) for 24), input size and crop (ADE20K 512 512, Cityscapes 768 768), "
        "decoder (SETR-Naive 'naive_up4' or Segmenter's mask transformer), normalisation and default xi. "
        "The data set's classes replace the preset's; --backbone, --decoder, --decoder-channels, "
        "--decision-layers, --input-size, --crop-size and --xi override its fields. ImageNet init: "
        "--pretrained hub (online) or --pretrained FILE (offline); without --pretrained it starts random")
    add("--backbone", default=None,
        help="timm ViT/DeiT name (default: the preset's, else ModelConfig's, vit_tiny_patch16_224)")
    add("--stem", choices=["conv", "patch"], default=None,
        help="patch embedding: 'patch' (timm's, ModelConfig's default) or 'conv' (early convolutions, better "
        "from scratch)")
    add("--decoder", choices=list(DECODERS), default=None,
        help="SETR-Naive (ModelConfig's default), SETR-PUP, or 'skip': SETR-Naive plus a skip from the conv "
        "stem's 1/4 features (sharper thin objects; needs --stem conv)")
    add("--decoder-channels", type=int, default=None,
        help="decoder width (default: the preset's, else ModelConfig's, 256)")
    add("--decision-layers", type=int, nargs="+", default=None,
        help="blocks after which a decision runs (default: the preset's, else the paper's: 3 6 9 for 12 blocks)")
    add("--no-merge", action="store_true", help="turn off Eq. 8 token merging (ablation)")
    add("--pretrained", default=None, metavar="FILE|hub",
        help="backbone ImageNet weights: a local timm weights file (.safetensors/.pth; must exist, never "
        "downloaded), or 'hub' for timm's default weights of the backbone (needs a network); default: random")
    add("--init", default=None, help="initialise all weights from a DoViT checkpoint (e.g. the student from the teacher)")
    add("--init-weights", default=None,
        help="copy every weight whose name and shape match from a DoViT checkpoint into the model that the "
        "flags describe (e.g. a new decoder on a trained backbone); the rest keeps its random init")


def _objective_flags(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument_group("what trains it (paper Eq. 9-12)").add_argument
    add("--teacher", default=None, help="dense teacher checkpoint for self-distillation (stage dovit)")
    add("--xi", type=float, default=None,
        help=f"token-pass threshold during training (stage dovit; default: the preset's, else {DEFAULT_XI})")
    add("--xi-range", type=float, nargs=2, default=None, metavar=("LO", "HI"),
        help="stage dovit: draw each step's xi uniformly from [LO, HI] instead of fixing it at --xi, so one "
        "model serves the whole slider range (more compute then gives more accuracy); validation uses --xi")
    add("--dense-fraction", type=float, default=0.0,
        help="stage dovit: share of steps run at xi = 1 (no token stops), drawn at random, so the full-depth "
        "path that the slider reaches at xi = 1 keeps training (trained at xi < 1 only, a student can lose "
        "accuracy as xi, and so compute, goes up)")
    add("--label-smoothing", type=float, default=0.0, help="label smoothing of the cross-entropy terms (0 = off)")
    add("--alpha", type=float, default=1.0, help="weight of the aux-head loss L_AH (Eq. 12)")
    add("--beta", type=float, default=0.4, help="weight of the self-distillation loss L_SD (Eq. 12)")


def _input_flags(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument_group("input size and augmentation").add_argument
    add("--input-size", type=int, nargs=2, default=None, metavar=("H", "W"),
        help=f"model input size (default: the preset's, else {DEFAULT_INPUT_SIZE[0]} {DEFAULT_INPUT_SIZE[1]})")
    add("--crop-size", type=int, nargs=2, default=None, metavar=("H", "W"), help="training crop (default: input size)")
    add("--scale-range", type=float, nargs=2, default=[0.5, 2.0], metavar=("LO", "HI"), help="random scale")
    add("--jitter", type=float, default=0.3, help="photometric jitter strength (0 = off)")
    add("--camera-aug", type=float, default=0.0,
        help="--augment standard: chance of each camera effect per image: gamma (dusk, sun), blur, sensor noise, "
        "JPEG (0 = off)")
    add("--augment", choices=AUGMENT_PRESETS, default="standard",
        help="augmentation preset (albumentations): 'standard' = scale, crop, flip, colour jitter (+ --camera-aug); "
        "'robust' adds colour temperature, channel gains, HSV, grayscale, gamma, blur, noise, JPEG, fog, shadow, "
        "sun flare and wide-aspect crops, for photos from other cities and cameras (dovit.data.augment)")


def _optimisation_flags(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument_group("optimisation and schedule").add_argument
    add("--ema", type=float, default=0.0,
        help="keep an exponential moving average of the weights with this decay (e.g. 0.999; 0 = off); "
        "validation, best/ and last/ then hold the averaged weights")
    add("--steps", type=int, default=10000, help="optimizer steps")
    add("--batch-size", type=int, default=8, help="images per process and step (equalised kept counts if > 1)")
    add("--lr", type=float, default=5e-4, help="peak learning rate (AdamW)")
    add("--min-lr", type=float, default=1e-6, help="final learning rate")
    add("--weight-decay", type=float, default=0.05, help="AdamW weight decay")
    add("--warmup-steps", type=int, default=300, help="linear warm-up steps")
    add("--schedule", choices=["cosine", "poly"], default="cosine", help="decay after warm-up")
    add("--drop-path", type=float, default=0.1, help="stochastic depth rate (training only)")
    add("--class-weight-power", type=float, default=0.0,
        help="cross-entropy class weights (median f / f_c) ** P from the training labels' class frequencies "
        "(0 = unweighted, 1 = full median-frequency balancing); helps thin rare classes (poles, signs)")
    add("--amp", choices=["auto", "bf16", "off"], default="auto",
        help="mixed precision: bf16 autocast ('auto' = on CUDA only; CPU bf16 is slower on most CPUs)")
    add("--max-minutes", type=float, default=None,
        help="stop after this much training wall time (then validate and save as at the end); the schedule "
        "still follows --steps")
    add("--fit-minutes", type=float, default=None,
        help=f"fit the schedule to this much training wall time: over steps {FIT_SKIP_STEPS}-{FIT_MEASURE_STEPS} "
        "(the first ones warm up kernels and loaders) the step rate is measured, and the run's length "
        "(and its cosine/poly decay) is cut from --steps to the steps that fit, so the schedule completes instead "
        "of being stopped half-way; for a GPU lent for minutes, where the step rate is not known beforehand")


def _run_flags(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument_group("checkpoints, validation and the process").add_argument
    add("--default-xi", type=float, default=None, help="xi written into the checkpoint config (default: --xi)")
    add("--eval-every", type=int, default=500, help="validate (and keep best/) every N steps; 0 = at the end only")
    add("--save-every", type=int, default=250, help="write last/ and train_state.pt every N steps")
    add("--max-val-images", type=int, default=None, help="validate on the first N images only")
    add("--workers", type=int, default=1, help="data loader workers per process")
    add("--threads", type=int, default=None, help="torch CPU threads per process")
    add("--seed", type=int, default=0, help="random seed")
    add("--resume", action="store_true",
        help="continue from OUTPUT/train_state.pt; refuses (exit code 2) when there is none, unless --allow-fresh")
    add("--allow-fresh", action="store_true",
        help="with --resume: start from step 0 when OUTPUT holds no train_state.pt yet (e.g. a run killed before "
        "its first save), instead of refusing")
    add("--no-progress", action="store_true", help="no tqdm bar (the log file is still written)")
    add("--dump-rank-weights", action="store_true",
        help="every rank also writes its final weights to OUTPUT/rank{R}.safetensors (to check that DDP ranks agree)")


# ---------------------------------------------------------------------------------------- setup
def lr_factor(step: int, warmup_steps: int, total_steps: int, lr: float, min_lr: float, schedule: str) -> float:
    """Multiplier of the peak learning rate at ``step``: linear warm-up, then cosine or poly decay to min_lr."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    floor = min_lr / lr
    decay = 0.5 * (1 + math.cos(math.pi * progress)) if schedule == "cosine" else (1 - progress) ** 0.9
    return floor + (1 - floor) * decay


def model_config(args: argparse.Namespace, info) -> ModelConfig:
    """The flags that describe the architecture, over the preset's fields (--preset), over ModelConfig's
    defaults: a flag left out keeps the preset's value, else the default. The classes are the data set's."""
    fields = {k: v for k, v in preset_config(args.preset).items() if k in PRESET_FIELDS} if args.preset else {}
    chosen = {"backbone": args.backbone, "decoder": args.decoder, "decoder_channels": args.decoder_channels,
              "stem": args.stem, "decision_layers": args.decision_layers}
    fields.update({k: v for k, v in chosen.items() if v is not None})
    return ModelConfig(
        num_classes=info.num_classes, merge_stopped=not args.no_merge, input_size=tuple(args.input_size),
        class_names=info.class_names, class_colors=info.class_colors, drop_path_rate=args.drop_path,
        ignore_index=IGNORE_INDEX, **fields,
    )


def build_student(args: argparse.Namespace, info) -> DoViTSegmenter:
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


def build_datasets(args: argparse.Namespace):
    """(train, val or None), without transforms yet (they need the model's normalisation): see set_transforms.

    --val-sequences without --train-sequences holds those recordings out of training.
    """
    if args.dataset == "synthetic":
        from .data.synthetic import synthetic_dataset

        size = tuple(args.input_size)
        return synthetic_dataset(64, size, seed=args.seed), synthetic_dataset(8, size, seed=args.seed + 1)
    held_out = args.val_sequences if args.val_split and not args.train_sequences else None
    train_set = build_dataset(args.dataset, args.data_root, args.train_split, sequences=args.train_sequences,
                              exclude_sequences=held_out)
    val_set = (build_dataset(args.dataset, args.data_root, args.val_split, sequences=args.val_sequences)
               if args.val_split else None)
    return train_set, val_set


def set_transforms(train_set, val_set, args: argparse.Namespace, config: ModelConfig) -> None:
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
        self.loop_start = time.perf_counter()
        self.timer_start: float | None = None
        self.rate, self.step = 0.0, start_step  # steps per second and the step they were measured at

    def observe(self, step: int) -> bool:
        """Call after each step; True once the rate is measured (then call ``total_steps``)."""
        done = step - self.start_step
        if done == FIT_SKIP_STEPS:
            self.timer_start = time.perf_counter()
        if done < FIT_MEASURE_STEPS or self.timer_start is None:
            return False
        self.rate = (done - FIT_SKIP_STEPS) / max(time.perf_counter() - self.timer_start, 1e-9)
        self.step = step
        return True

    def total_steps(self, requested: int) -> int:
        """The schedule's length: the steps that fit in what is left of the budget, at most ``requested``."""
        left_s = self.budget_s - (time.perf_counter() - self.loop_start)
        return max(self.step, min(requested, self.step + int(self.rate * max(left_s, 0.0))))


def _agreed(value: int, world: int, device: torch.device) -> int:
    """Rank 0's value on every rank (so DDP ranks stop at the same step)."""
    if world == 1:
        return value
    tensor = torch.tensor([value], device=device, dtype=torch.int64)
    dist.broadcast(tensor, src=0)
    return int(tensor.item())


def _past_deadline(deadline: float, world: int, device: torch.device) -> bool:
    """True once rank 0's clock passes the deadline; all ranks agree, so none waits on a collective alone."""
    return bool(_agreed(int(time.perf_counter() > deadline), world, device))


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
        floats = [(a, c) for a, c in zip(averaged, current) if a.is_floating_point()]
        if floats:
            torch._foreach_lerp_([a for a, _ in floats], [c for _, c in floats], weight)
        for a, c in zip(averaged, current):  # counters (BatchNorm's num_batches_tracked) follow the model
            if not a.is_floating_point():
                a.copy_(c)

    return AveragedModel(model, multi_avg_fn=ema_update, use_buffers=True)


@dataclass
class Run:
    """What a training run holds between steps; built by ``setup``."""

    args: argparse.Namespace
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
    schedule_steps: list = field(default_factory=list)  # [total steps]: read by the LR lambda, cut by --fit-minutes
    fitted: bool = False  # --fit-minutes has set schedule_steps (kept across --resume)

    @property
    def shipped(self) -> DoViTSegmenter:
        """The weights that are validated and saved: the EMA when on, else the trained model."""
        return self.ema.module if self.ema is not None else self.model


def setup(args: argparse.Namespace) -> Run:
    """Processes, data, model (and teacher, EMA), optimiser and schedule; resumes when asked."""
    rank, world, device = _init_distributed()
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed crop size: let cuDNN pick its fastest convolutions
        torch.backends.cuda.matmul.allow_tf32 = True  # fp32 matmuls outside autocast (validation) on tensor cores
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
        init_report = copy_matching_weights(model, load_checkpoint(args.init_weights)) if args.init_weights else None
    if args.default_xi is not None or args.stage == "dovit":
        model.config.default_xi = args.default_xi if args.default_xi is not None else args.xi
    model.to(device)
    teacher = None
    if args.stage == "dovit" and args.teacher and args.beta > 0:
        with _setup_errors("--teacher"):
            teacher = load_checkpoint(args.teacher)
            if teacher.config.num_classes != model.config.num_classes:
                raise ValueError(f"{args.teacher} predicts {teacher.config.num_classes} classes, the student "
                                 f"{model.config.num_classes}")
        teacher = teacher.to(device).eval()
        for parameter in teacher.parameters():
            parameter.requires_grad_(False)
    if rank == 0:
        output.mkdir(parents=True, exist_ok=True)  # only once the flags proved usable
    set_transforms(train_set, val_set, args, model.config)
    _seed_everything(args.seed + rank)

    decay, no_decay = [], []
    for name, parameter in model.named_parameters():
        (no_decay if parameter.ndim <= 1 or "pos_embed" in name or "cls_token" in name else decay).append(parameter)
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=args.lr)
    schedule_steps = [args.steps]  # the schedule's length: --steps, or fewer once --fit-minutes has measured
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(
        step, args.warmup_steps, schedule_steps[0], args.lr, args.min_lr, args.schedule))
    run = Run(args, rank, world, device, output, log, model,
              DistributedDataParallel(model) if world > 1 else model, teacher, weight_average(model, args.ema),
              optimizer, scheduler, train_set, val_set, _class_weights(args.class_weight_power, train_set, device),
              source={k: v for k, v in model.checkpoint_metadata.items() if k in SOURCE_KEYS} if args.init else {},
              schedule_steps=schedule_steps)
    _resume(run)
    if rank == 0:
        log({"event": "start", "stage": args.stage, "world_size": world, "step": run.step, "steps": args.steps,
             "train_images": len(train_set), "val_images": len(val_set) if val_set is not None else 0,
             "train_sequences": getattr(train_set, "sequences", None),
             "val_sequences": getattr(val_set, "sequences", None),
             "init_weights": init_report and {"copied": len(init_report["copied"]),
                                              "kept_random": init_report["kept_random"]},
             "class_weights": None if run.class_weights is None else [round(w, 4) for w in run.class_weights.tolist()],
             "config": json.dumps(model.config.to_dict()), "args": json.dumps(vars(args))})
    return run


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
            refuse(f"{state_path} does not exist, so there is nothing to resume (a run killed before its first "
                   f"save, every --save-every {args.save_every} steps, leaves none); pass --allow-fresh to start "
                   "from step 0")
        if run.rank == 0:
            print(f"--resume: no {STATE_NAME} in {output} yet; starting from step 0 (--allow-fresh)", flush=True)
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
    """One optimiser step at threshold step_xi (Eq. 12 loss); returns the loss parts and the forward's output."""
    args = run.args
    teacher_logits = None
    with _autocast(args.amp, run.device):
        if run.teacher is not None:
            with torch.no_grad():
                teacher_logits = run.teacher(pixels, xi=1.0).logits
        out = run.net(pixels, xi=step_xi, equalise=True)
    parts = dovit_loss(out, labels, run.model.patch_size, args.alpha, args.beta, teacher_logits, run.class_weights,
                       args.label_smoothing)
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
def train(args: argparse.Namespace) -> dict:
    """setup -> (step -> validate-or-save)* -> final save; returns the last step and the best validation."""
    run = setup(args)
    rank, world, device, log = run.rank, run.world, run.device, run.log
    sampler = (DistributedSampler(run.train_set, num_replicas=world, rank=rank, shuffle=True, seed=args.seed)
               if world > 1 else None)
    loader = DataLoader(run.train_set, batch_size=args.batch_size, shuffle=sampler is None, sampler=sampler,
                        num_workers=args.workers, drop_last=True,
                        generator=torch.Generator().manual_seed(args.seed + run.step),
                        persistent_workers=args.workers > 0, pin_memory=device.type == "cuda",
                        worker_init_fn=_worker_init)
    xi = args.xi if args.stage == "dovit" else 1.0
    xi_draw = random.Random(args.seed + run.step)  # the same on every rank, so DDP ranks keep equal-length batches
    bar = tqdm(total=args.steps, initial=run.step, desc=f"{args.stage}", disable=args.no_progress or rank != 0,
               dynamic_ncols=True)
    epoch = run.step * args.batch_size * world // max(1, len(run.train_set))
    run.model.train()
    window_start, window_images, window_wait = time.perf_counter(), 0, 0.0
    deadline = None if args.max_minutes is None else time.perf_counter() + 60.0 * args.max_minutes
    final_step = run.schedule_steps[0]
    fit = None if args.fit_minutes is None or run.fitted else ScheduleFit(args.fit_minutes, run.step)
    while run.step < final_step:
        if sampler is not None:
            sampler.set_epoch(epoch)
        fetch_start = time.perf_counter()
        for pixels, labels in loader:
            window_wait += time.perf_counter() - fetch_start  # time the GPU/CPU step waited for data
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
            if deadline is not None and final_step > step and _past_deadline(deadline, world, device):
                final_step = step  # --max-minutes: this step is the last one (validated and saved below)
                log({"event": "time_limit", "step": step, "max_minutes": args.max_minutes})
            window_images += pixels.shape[0] * world
            bar.update(1)
            kept = (out.group_tokens[:, -1].float().mean() / out.group_tokens[:, 0].float().mean()).item()
            bar.set_postfix(loss=f"{parts['loss'].item():.3f}", kept=f"{kept:.2f}")
            if step % 10 == 0 or step == final_step:
                elapsed = time.perf_counter() - window_start
                log({"step": step, "epoch": epoch, "lr": run.scheduler.get_last_lr()[0], "xi": step_xi,
                     **{k: float(v.item()) for k, v in parts.items()}, "kept_last_group": kept,
                     "images_per_s": window_images / max(elapsed, 1e-9),
                     "data_wait_frac": window_wait / max(elapsed, 1e-9)})
                window_start, window_images, window_wait = time.perf_counter(), 0, 0.0
            _validate_or_save(run, xi, final_step)
            fetch_start = time.perf_counter()
        epoch += 1
    bar.close()
    if world > 1:
        # DDP broadcasts rank 0's buffers (BatchNorm running statistics) at the start of every forward, so
        # after the last step each rank still holds its own last update: adopt rank 0's, as the next forward would.
        for buffer in run.shipped.buffers():
            dist.broadcast(buffer, src=0)
    if args.dump_rank_weights:
        run.output.mkdir(parents=True, exist_ok=True)  # rank 0 may not have created it yet
        save_file({name: tensor.detach().cpu().contiguous() for name, tensor in run.shipped.state_dict().items()},
                  str(run.output / f"rank{rank}.safetensors"))
    if rank == 0:
        _save_state(run)
        log({"event": "done", "step": run.step, "best_miou": run.best["miou"], "best_step": run.best["step"]})
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return {"step": run.step, "best": run.best}


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
            "args": {k: v for k, v in vars(args).items()}, **(source or {})}
    if val is not None:
        meta["val"] = {k: getattr(val, k) for k in ("xi", "miou", "pa", "mpa", "backbone_gflops",
                                                   "dense_backbone_gflops")}
    return meta


def _save_state(run: Run) -> None:
    """last/ (the shipped weights) and OUTPUT/train_state.pt (everything --resume needs).

    Each is written whole, fsynced and renamed into place, so a kill at any moment leaves the previous or
    the new version of each, never a part (a kill between the two leaves last/ one save ahead of the state).
    """
    model, optimizer, scheduler, step, best, output, args = (run.model, run.optimizer, run.scheduler, run.step,
                                                            run.best, run.output, run.args)
    save_checkpoint(run.shipped, output / "last", metadata=_metadata(args, step, source=run.source))
    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
             "step": step, "best": best, "torch_rng": torch.get_rng_state()}
    if run.fitted:
        state["schedule_steps"] = run.schedule_steps[0]
    if run.ema is not None:
        state["ema"] = run.ema.state_dict()
    atomic_write(output / STATE_NAME, lambda handle: torch.save(state, handle))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.stage == "dovit":
        try:
            check_xi(args.xi)
        except ValueError as error:
            print(f"error: --{error}", file=sys.stderr)
            return 2
    if args.xi_range and not 0.0 <= args.xi_range[0] <= args.xi_range[1] <= 1.0:
        print(f"error: --xi-range needs 0 <= LO <= HI <= 1, got {args.xi_range}", file=sys.stderr)
        return 2
    if not 0.0 <= args.dense_fraction <= 1.0:
        print(f"error: --dense-fraction must lie in [0, 1], got {args.dense_fraction}", file=sys.stderr)
        return 2
    if args.init and args.init_weights:
        print("error: use --init (whole checkpoint, its config) or --init-weights (matching tensors), not both",
              file=sys.stderr)
        return 2
    if args.preset and args.init:
        print("error: --preset describes a new model and --init loads a whole checkpoint (its own architecture): "
              "use one", file=sys.stderr)
        return 2
    if args.pretrained not in (None, "hub") and not Path(args.pretrained).is_file():
        print(f"error: --pretrained: no such file: {args.pretrained} (a local timm weights file, .safetensors or "
              ".pth; --pretrained hub downloads timm's weights when online)", file=sys.stderr)
        return 2
    if args.preset and args.pretrained is None and not args.init_weights:
        print(f"note: --preset {args.preset} starts from random backbone weights; pass --pretrained hub (online) "
              "or --pretrained FILE for its ImageNet initialisation", file=sys.stderr)
    try:
        train(args)
    except SetupError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
