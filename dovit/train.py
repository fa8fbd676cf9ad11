"""python -m dovit.train: train a dense teacher or a DoViT student (Eq. 9-12); torchrun gives DDP.

Parses the flags into a ``dovit.training.trainer.TrainConfig`` and runs ``dovit.training.trainer.train``.
"""
from __future__ import annotations

import argparse
import sys

from .core.config import DECODERS
from .data import DATASETS
from .data.augment import AUGMENT_PRESETS
from .training.presets import PRESETS, preset_config
from .training.trainer import (
    DEFAULT_INPUT_SIZE,
    DEFAULT_XI,
    FIT_MEASURE_STEPS,
    FIT_SKIP_STEPS,
    SetupError,
    TrainConfig,
    check_config,
    train,
)


def parse_args(argv: list[str] | None = None) -> TrainConfig:
    parser = argparse.ArgumentParser(
        prog="python -m dovit.train",
        description="Train a DoViT segmenter. Stage 'dense' trains the teacher (no token pass, CE on the "
                    "decoder and the aux heads); stage 'dovit' trains the student with token pass at --xi "
                    "and the loss CE + alpha*L_AH + beta*KL(student || dense teacher) (paper Eq. 9-12). "
                    "--preset NAME starts from one of the paper's models (SETR or Segmenter on ViT-T/S/B/L, "
                    "ADE20K or Cityscapes settings); flags given explicitly override its fields. Run under "
                    "`torchrun --nproc_per_node K` for DistributedDataParallel (gloo on CPU, NCCL on GPU). "
                    "Bad flags, files or drives exit with code 2 and one line on stderr.",
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
    return TrainConfig(**vars(args))


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
        "segmenter_vit_s_ade20k; list: dovit.PRESETS): its backbone (timm vit_*_patch16_384), decision "
        "layers ((3 6 9) for 12 blocks, (6 12 18) for 24), input size and crop (ADE20K 512 512, Cityscapes "
        "768 768), decoder (SETR-Naive 'naive_up4' or Segmenter's mask transformer), normalisation and "
        "default xi. The data set's classes replace the preset's; --backbone, --decoder, --decoder-channels, "
        "--decision-layers, --input-size, --crop-size and --xi override its fields. ImageNet init: "
        "--pretrained hub (online) or --pretrained FILE (offline); without --pretrained it starts random")
    add("--backbone", default=None,
        help="timm ViT/DeiT name (default: the preset's, else ModelConfig's, vit_tiny_patch16_224)")
    add("--stem", choices=["conv", "patch", "espnetv2"], default=None,
        help="patch embedding: 'patch' (timm's, ModelConfig's default), 'conv' (early convolutions, better "
        "from scratch) or 'espnetv2' (a hybrid ViT on ESPNetv2's released encoder and decoder: give "
        "--stem-weights and --decoder espnetv2)")
    add("--stem-weights", default=None, metavar="FILE",
        help="--stem espnetv2: the released ESPNetv2 state dict (espnetv2_s_2.0_city_1024x512.pth), loaded "
        "strictly into the encoder and decoder; its weights then travel in the checkpoints")
    add("--freeze-stem", action="store_true",
        help="keep the pretrained encoder's weights and BatchNorm statistics fixed (the first, cheap phase)")
    add("--pretrained-lr-scale", type=float, default=1.0,
        help="learning-rate multiplier for a hybrid's released encoder and decoder weights (e.g. 0.1: they "
        "fine-tune slowly while the new blocks, projection and aux heads learn at --lr)")
    add("--decoder", choices=list(DECODERS), default=None,
        help="SETR-Naive (ModelConfig's default), SETR-PUP, or 'skip': SETR-Naive plus a skip from the conv "
        "stem's 1/4 features (sharper thin objects; needs --stem conv)")
    add("--decoder-channels", type=int, default=None,
        help="decoder width (default: the preset's, else ModelConfig's, 256)")
    add("--decision-layers", type=int, nargs="+", default=None,
        help="blocks after which a decision runs (default: the preset's, else the paper's: 3 6 9 for 12 "
             "blocks)")
    add("--no-merge", action="store_true", help="turn off Eq. 8 token merging (ablation)")
    add("--pretrained", default=None, metavar="FILE|hub",
        help="backbone ImageNet weights: a local timm weights file (.safetensors/.pth; must exist, never "
        "downloaded), or 'hub' for timm's default weights of the backbone (needs a network); default: random")
    add("--init", default=None,
        help="initialise all weights from a DoViT checkpoint (e.g. the student from the teacher)")
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
    add("--label-smoothing", type=float, default=0.0,
        help="label smoothing of the cross-entropy terms (0 = off)")
    add("--released-teacher", default=None, metavar="FILE",
        help="a released ESPNetv2 Cityscapes state dict whose answers, classes mapped to the data set's, are "
        "distilled (KL) on the pixels the labels leave Unlabelled, weighted by --gamma")
    add("--gamma", type=float, default=0.5, help="weight of the --released-teacher distillation")
    add("--alpha", type=float, default=1.0, help="weight of the aux-head loss L_AH (Eq. 12)")
    add("--beta", type=float, default=0.4, help="weight of the self-distillation loss L_SD (Eq. 12)")


def _input_flags(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument_group("input size and augmentation").add_argument
    add("--input-size", type=int, nargs=2, default=None, metavar=("H", "W"),
        help=f"model input size (default: the preset's, else {DEFAULT_INPUT_SIZE[0]} "
             f"{DEFAULT_INPUT_SIZE[1]})")
    add("--crop-size", type=int, nargs=2, default=None, metavar=("H", "W"),
        help="training crop (default: input size)")
    add("--scale-range", type=float, nargs=2, default=[0.5, 2.0], metavar=("LO", "HI"), help="random scale")
    add("--jitter", type=float, default=0.3, help="photometric jitter strength (0 = off)")
    add("--camera-aug", type=float, default=0.0,
        help="--augment standard: chance of each camera effect per image: gamma (dusk, sun), blur, sensor "
             "noise, JPEG (0 = off)")
    add("--augment", choices=AUGMENT_PRESETS, default="standard",
        help="augmentation preset (albumentations): 'standard' = scale, crop, flip, colour jitter (+ "
             "--camera-aug); 'robust' adds colour temperature, channel gains, HSV, grayscale, gamma, blur, "
             "noise, JPEG, fog, shadow, sun flare and wide-aspect crops, for photos from other cities and "
             "cameras (dovit.data.augment)")


def _optimisation_flags(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument_group("optimisation and schedule").add_argument
    add("--ema", type=float, default=0.0,
        help="keep an exponential moving average of the weights with this decay (e.g. 0.999; 0 = off); "
        "validation, best/ and last/ then hold the averaged weights")
    add("--steps", type=int, default=10000, help="optimizer steps")
    add("--batch-size", type=int, default=8,
        help="images per process and step (equalised kept counts if > 1)")
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
        help="fit the schedule to this much training wall time: over steps "
             f"{FIT_SKIP_STEPS}-{FIT_MEASURE_STEPS} (the first ones warm up kernels and loaders) the step "
             "rate is measured, and the run's length (and its cosine/poly decay) is cut from --steps to the "
             "steps that fit, so the schedule completes instead of being stopped half-way; for a GPU lent "
             "for minutes, where the step rate is not known beforehand")


def _run_flags(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument_group("checkpoints, validation and the process").add_argument
    add("--default-xi", type=float, default=None,
        help="xi written into the checkpoint config (default: --xi)")
    add("--eval-every", type=int, default=500,
        help="validate (and keep best/) every N steps; 0 = at the end only")
    add("--save-every", type=int, default=250, help="write last/ and train_state.pt every N steps")
    add("--max-val-images", type=int, default=None, help="validate on the first N images only")
    add("--workers", type=int, default=1, help="data loader workers per process")
    add("--threads", type=int, default=None, help="torch CPU threads per process")
    add("--seed", type=int, default=0, help="random seed")
    add("--resume", action="store_true",
        help="continue from OUTPUT/train_state.pt; refuses (exit code 2) when there is none, unless "
             "--allow-fresh")
    add("--allow-fresh", action="store_true",
        help="with --resume: start from step 0 when OUTPUT holds no train_state.pt yet (e.g. a run killed "
             "before its first save), instead of refusing")
    add("--no-progress", action="store_true", help="no tqdm bar (the log file is still written)")
    add("--dump-rank-weights", action="store_true",
        help="every rank also writes its final weights to OUTPUT/rank{R}.safetensors (to check that DDP "
             "ranks agree)")


def main(argv: list[str] | None = None) -> int:
    config = parse_args(argv)
    try:
        check_config(config)
        if config.preset and config.pretrained is None and not config.init_weights:
            print(f"note: --preset {config.preset} starts from random backbone weights; pass --pretrained "
                  "hub (online) or --pretrained FILE for its ImageNet initialisation", file=sys.stderr)
        train(config)
    except SetupError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
