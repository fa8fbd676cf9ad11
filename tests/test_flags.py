"""dovit.cli.flags, and every command-line module's flags parsed into its typed config with the dataclass's
defaults."""
import argparse
from dataclasses import fields

import pytest
import torch

from dovit import analyze, benchmark, compare, convert, evaluate, familiarity, folds
from dovit.cli import flags

CLIS = [  # module, the fewest flags it needs, its config with those
    (evaluate, [], evaluate.EvaluateConfig()),
    (compare, [], compare.CompareConfig()),
    (analyze, ["--input", "in", "--out", "out"], analyze.AnalyzeConfig(input="in", out="out")),
    (convert, ["src.pth", "dst"], convert.ConvertConfig(src="src.pth", dst="dst")),
    (familiarity, ["ckpt"], familiarity.FamiliarityConfig(checkpoint="ckpt")),
    (folds, [], folds.FoldsConfig()),
]


@pytest.mark.parametrize("module, argv, expected", CLIS, ids=[m.__name__ for m, _, _ in CLIS])
def test_flags_parse_into_the_typed_config_with_its_defaults(module, argv, expected):
    parsed = module.parse_args(argv)
    assert type(parsed) is type(expected) and parsed == expected


def test_the_benchmark_parser_gives_its_config():
    parsed = benchmark.BenchmarkConfig(**vars(benchmark.build_parser().parse_args([])))
    assert parsed == benchmark.BenchmarkConfig()
    assert {f.name
            for f in fields(benchmark.BenchmarkConfig)} == set(vars(benchmark.build_parser().parse_args([])))


def test_shared_flags_and_threads():
    parser = argparse.ArgumentParser()
    flags.add_data_flags(parser, split="train+val")
    flags.add_process_flags(parser)
    parsed = parser.parse_args(["--sequences", "0001TP", "--threads", "1"])
    assert (parsed.dataset, parsed.split, parsed.sequences, parsed.device) == ("camvid", "train+val",
                                                                               ["0001TP"], "cpu")
    previous = torch.get_num_threads()
    try:
        flags.apply_threads(1)
        assert torch.get_num_threads() == 1
        flags.apply_threads(None)  # not given: torch's choice stays
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(previous)
