"""python -m dovit.folds: leave-one-drive-out validation, the score that predicts streets a model never saw.

For every recording (CamVid drive: the file-name prefix) of the chosen splits, train a dense teacher on
the other drives, then a DoViT student from it, and evaluate both on the held-out drive: the teacher at
ξ = 1 and ξ = 0 (its aux heads stop every token after the first decision: the gap is what the later
blocks contribute) and the student over a ξ grid. Writes one JSON file and one markdown table.

Each fold's runs are ordinary ``python -m dovit.train`` runs under OUTPUT/<drive>/{teacher,student}; a
finished run (its ``last/`` holds the final step) is reused, so an interrupted sweep continues where it
stopped. The final schedule's ``last/`` is scored, never a checkpoint picked on the held-out drive.
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from . import train
from .core.checkpoint import load_checkpoint, read_config
from .data import DEFAULT_DATA_ROOT, EvalTransform, build_dataset
from .evaluation.xi_sweep import evaluate_model
from .training import trainer

THIN_CLASSES = ("Pole", "SignSymbol", "Fence", "Pedestrian", "Bicyclist")


# The recipes each fold trains with (flags of python -m dovit.train; stage, data and output are set per fold).
TEACHER_ARGS = ("--stem conv --decoder skip --decoder-channels 64 --steps 4000 --warmup-steps 200 --lr 8e-4 "
                "--batch-size 16 --class-weight-power 0.5")
STUDENT_ARGS = ("--xi 0.9 --xi-range 0.8 1.0 --dense-fraction 0.5 --steps 600 --lr 1.4e-4 --warmup-steps 30 "
                "--batch-size 8 --class-weight-power 0.5")


@dataclass
class FoldsConfig:
    """``python -m dovit.folds``'s flags (see its --help for each)."""

    output: str = "runs/folds"
    data_root: str = DEFAULT_DATA_ROOT
    split: str = "train+val"
    drives: list[str] | None = None
    teacher_args: str = TEACHER_ARGS
    student_args: str = STUDENT_ARGS
    common_args: str = ""
    teacher_xi: list[float] = field(default_factory=lambda: [0.0, 1.0])
    student_xi: list[float] = field(default_factory=lambda: [0.0, 0.8, 0.9, 0.95, 1.0])
    device: str = field(default_factory=lambda: "cuda" if torch.cuda.is_available() else "cpu")
    json: str = "docs/results/camvid_folds.json"
    markdown: str = "docs/results/camvid_folds.md"


@dataclass
class FoldResult:
    """One held-out drive: frame counts and, per model and ξ, the evaluate_model record."""

    held_out: str
    train_images: int
    test_images: int
    teacher: dict[str, dict]  # str(xi) -> metrics
    student: dict[str, dict]


def parse_args(argv: list[str] | None = None) -> FoldsConfig:
    parser = argparse.ArgumentParser(
        prog="python -m dovit.folds",
        description="Leave-one-drive-out validation: per drive, train a teacher and a student on the other "
        "drives and score both on the held-out one; writes a JSON file and a markdown table.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add = parser.add_argument
    add("--output", default="runs/folds", help="folder for the per-fold training runs")
    add("--data-root", default=DEFAULT_DATA_ROOT, help="CamVid root (train/, val/ and their annot/)")
    add("--split", default="train+val", help="splits whose drives form the folds ('+' joins splits)")
    add("--drives", nargs="+", default=None, help="hold out only these drives (default: every drive)")
    add("--teacher-args", default=TEACHER_ARGS,
        help="python -m dovit.train flags of the dense teacher (stage, data and output are set here)")
    add("--student-args", default=STUDENT_ARGS,
        help="python -m dovit.train flags of the student, trained from its fold's teacher (--init, "
             "--teacher)")
    add("--common-args", default="", help="flags given to both runs (e.g. --input-size 192 256 --threads 1)")
    add("--teacher-xi", type=float, nargs="+", default=[0.0, 1.0],
        help="ξ values at which to score the teacher")
    add("--student-xi", type=float, nargs="+", default=[0.0, 0.8, 0.9, 0.95, 1.0],
        help="ξ values at which to score the student")
    add("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="evaluation device")
    add("--json", default="docs/results/camvid_folds.json", help="write the per-fold results here")
    add("--markdown", default="docs/results/camvid_folds.md", help="write the summary table here")
    return FoldsConfig(**vars(parser.parse_args(argv)))


def _finished(run: Path, argv: list[str]) -> bool:
    """True when run/last holds the final step of the schedule that argv asks for."""
    steps = train.parse_args(argv).steps
    try:
        return int(read_config(run / "last")[1].get("step", -1)) >= steps
    except Exception:  # noqa: BLE001 - a missing or partial run is simply not finished
        return False


def _train(run: Path, argv: list[str]) -> None:
    if _finished(run, argv):
        print(f"reusing finished run {run}")
        return
    resume = ["--resume"] if (run / trainer.STATE_NAME).exists() else []
    print("python -m dovit.train " + shlex.join(argv + resume), flush=True)
    # the fold's flags, as a user would type them, into a TrainConfig
    config = train.parse_args(argv + resume)
    try:
        trainer.check_config(config)
        trainer.train(config)
    except trainer.SetupError as error:
        raise SystemExit(f"training failed: {run}: {error}") from None


def run_fold(args: FoldsConfig, drive: str) -> FoldResult:
    """Train the fold's teacher and student (or reuse them) and score both on the held-out drive."""
    fold = Path(args.output) / drive
    data = ["--data-root", args.data_root, "--train-split", args.split, "--val-split", args.split,
            "--val-sequences", drive, "--eval-every", "0"]
    common = shlex.split(args.common_args)
    teacher_run, student_run = fold / "teacher", fold / "student"
    _train(teacher_run, ["--stage", "dense", "--output", str(teacher_run), *data,
                         *shlex.split(args.teacher_args),
                         *common])
    teacher_ckpt = str(teacher_run / "last")
    _train(student_run, ["--stage", "dovit", "--output", str(student_run), "--init", teacher_ckpt,
                         "--teacher", teacher_ckpt, *data, *shlex.split(args.student_args), *common])
    scores = {}
    for name, run, xi_values in (("teacher", teacher_run, args.teacher_xi), ("student", student_run,
                                                                             args.student_xi)):
        model = load_checkpoint(run / "last").to(args.device)
        config = model.config
        test = build_dataset("camvid", args.data_root, args.split,
                             EvalTransform(config.input_size, config.mean, config.std), sequences=[drive])
        results = evaluate_model(model, test, xi_values, device=args.device, throughput_images=0)
        scores[name] = {f"{r.xi:g}": r.to_dict() for r in results}
    trained_on = build_dataset("camvid", args.data_root, args.split, exclude_sequences=[drive])
    return FoldResult(drive, len(trained_on), len(test), scores["teacher"], scores["student"])


def summary_table(folds: list[FoldResult], class_names: list[str]) -> str:
    """Markdown: per held-out drive and their mean, mIoU of teacher (ξ 1, 0) and student per ξ, FLOPs
    saved."""
    student_xi = list(folds[0].student)
    teacher_xi = sorted(folds[0].teacher, key=float, reverse=True)
    head = (["held-out drive", "train / test frames"] + [f"teacher ξ={x}" for x in teacher_xi]
            + [f"student ξ={x}" for x in student_xi] + ["student FLOPs saved at ξ=0.9"])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def row(label: str, frames: str, teacher: list[float], student: list[float], saved: float) -> str:
        cells = [label, frames] + [f"{100 * v:.1f}" for v in teacher + student] + [f"{100 * saved:.0f} %"]
        return "| " + " | ".join(cells) + " |"

    def saved_at(fold: FoldResult, xi: str = "0.9") -> float:
        record = fold.student.get(xi)
        return float("nan") if record is None else 1.0 - record["gflops"] / record["dense_gflops"]

    for fold in folds:
        lines.append(row(fold.held_out, f"{fold.train_images} / {fold.test_images}",
                         [fold.teacher[x]["miou"] for x in teacher_xi],
                         [fold.student[x]["miou"] for x in student_xi],
                         saved_at(fold)))
    count = len(folds)
    lines.append(row("**mean**", "", [sum(f.teacher[x]["miou"] for f in folds) / count for x in teacher_xi],
                     [sum(f.student[x]["miou"] for f in folds) / count for x in student_xi],
                     sum(saved_at(f) for f in folds) / count))
    thin = [c for c in THIN_CLASSES if c in class_names]
    if thin:
        lines += ["", "Thin classes, IoU on the held-out drive (teacher ξ=1 / student ξ=0.9):", "",
                  "| held-out drive | " + " | ".join(thin) + " |", "|---|" + "---|" * len(thin)]
        for fold in folds:
            teacher, student = fold.teacher.get("1"), fold.student.get("0.9")
            cells = [f"{100 * teacher['per_class_iou'][class_names.index(c)]:.1f} / "
                     + (f"{100 * student['per_class_iou'][class_names.index(c)]:.1f}" if student else "–")
                     for c in thin] if teacher else ["–"] * len(thin)
            lines.append(f"| {fold.held_out} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        everything = build_dataset("camvid", args.data_root, args.split)
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    drives = args.drives or list(everything.sequences)
    unknown = [d for d in drives if d not in everything.sequences]
    if unknown or len(everything.sequences) < 2:
        print(f"error: need two or more drives and known ones; {args.split} has {everything.sequences}, "
              f"asked for {drives}", file=sys.stderr)
        return 2
    folds = [run_fold(args, drive) for drive in drives]
    table = summary_table(folds, everything.info.class_names)
    print(table)
    for path, text in ((args.json, json.dumps({"command": "python -m dovit.folds "
                                                          "" + shlex.join(argv or sys.argv[1:]),
                                               "class_names": everything.info.class_names,
                                               "folds": [asdict(f) for f in folds]}, indent=1) + "\n"),
                       (args.markdown, table + "\n")):
        if path:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            Path(path).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
