"""The paper's training losses (Eq. 9-12): cross-entropy on the decoder and the aux heads, self-distillation.

    L = L_CE + alpha * L_AH + beta * L_SD                                                  (Eq. 12)
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..core.preprocess import upsample_logits
from ..data import IGNORE_INDEX


def pixel_kl(p_logits: torch.Tensor, q_logits: torch.Tensor) -> torch.Tensor:
    """KL(p || q) = sum_c p (log p - log q) per pixel: (B, C, H, W) logits -> (B, H, W)."""
    log_p = F.log_softmax(p_logits.float(), dim=1)
    log_q = F.log_softmax(q_logits.float(), dim=1)
    return (log_p.exp() * (log_p - log_q)).sum(dim=1)


def self_distillation(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """Eq. 11: pixel-wise KL(p_s || p_t) = sum_c p_s (log p_s - log p_t), averaged over pixels."""
    return pixel_kl(student_logits, teacher_logits).mean()


def unlabelled_distillation(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                            labels: torch.Tensor) -> torch.Tensor:
    """KL(p_t || p_s) on the pixels the labels leave Unlabelled, averaged over those pixels (0 when none): a
    teacher that saw other streets says what the labels do not (``--released-teacher``)."""
    unlabelled = labels == IGNORE_INDEX
    if not bool(unlabelled.any()):
        return student_logits.sum() * 0.0
    return pixel_kl(teacher_logits, student_logits)[unlabelled].mean()


def dovit_loss(output, labels: torch.Tensor, patch_size: int, alpha: float = 1.0, beta: float = 0.4,
               teacher_logits: torch.Tensor | None = None,
               class_weights: torch.Tensor
               | None = None, label_smoothing: float = 0.0) -> dict[str, torch.Tensor]:
    """L = L_CE + alpha * L_AH + beta * L_SD (Eq. 9-12); returns the parts ('ce', 'aux', 'sd') and 'loss'.

    output: a SegmenterOutput (logits (B, C, H, W), aux_logits [(B, C, h, w)]); labels (B, H, W) int64.
    alpha weights the aux-head loss L_AH, beta the self-distillation L_SD (Eq. 12).
    class_weights (C,) optionally weight the cross-entropy terms (decoder and aux heads), not the KL;
    label_smoothing softens their targets (torch's cross_entropy option).
    """
    def cross_entropy(logits: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits.float(), labels, weight=class_weights, ignore_index=IGNORE_INDEX,
                               label_smoothing=label_smoothing)

    parts = {"ce": cross_entropy(output.logits)}
    # Eq. 10
    aux = [cross_entropy(upsample_logits(a, labels.shape[-2:], patch_size)) for a in output.aux_logits]
    parts["aux"] = torch.stack(aux).sum() if aux else torch.zeros_like(parts["ce"])
    parts["sd"] = (self_distillation(output.logits, teacher_logits) if teacher_logits is not None
                   else torch.zeros_like(parts["ce"]))
    parts["loss"] = parts["ce"] + alpha * parts["aux"] + beta * parts["sd"]
    return parts
