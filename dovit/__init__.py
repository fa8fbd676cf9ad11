"""DoViT: dynamic token-pass vision transformers for semantic segmentation (Liu et al., WACV 2024)."""
from .core.checkpoint import CheckpointError, load_checkpoint, read_config, save_checkpoint
from .core.config import ModelConfig
from .core.flops import FLOPS_CONVENTION, count_flops
from .core.model import DoViTSegmenter, KeepDecider, SegmenterOutput, build_model
from .core.policies import POLICIES, PolicyResult, run_policies
from .core.predictor import Prediction, Predictor, PreparedImage
from .core.trace import DecisionTrace, GroupTrace, Trace, build_trace
from .deploy.onnx_runtime import OrtPredictor, OrtSegmenter
from .training.presets import PRESETS, build_preset

__all__ = [
    "build_model", "DoViTSegmenter", "SegmenterOutput", "ModelConfig",
    "Predictor", "Prediction", "PreparedImage", "Trace", "DecisionTrace", "GroupTrace", "build_trace",
    "save_checkpoint", "load_checkpoint", "read_config", "CheckpointError",
    "count_flops", "FLOPS_CONVENTION", "build_preset", "PRESETS",
    "POLICIES", "PolicyResult", "run_policies", "KeepDecider", "OrtPredictor", "OrtSegmenter",
]
