"""dovit.training.losses: L = CE + alpha * L_AH + beta * L_SD (Eq. 9-12), checked term by term against torch's
own losses."""
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from dovit.data import IGNORE_INDEX
from dovit.training import losses


def fake_output(seed: int, batch=2, classes=4, size=(20, 28), grid=(2, 2), heads=3):
    generator = torch.Generator().manual_seed(seed)
    return SimpleNamespace(
        logits=torch.randn(batch, classes, *size, generator=generator),
        aux_logits=[torch.randn(batch, classes, *grid, generator=generator) for _ in range(heads)],
    )


def make_labels(seed: int, batch=2, classes=4, size=(20, 28)):
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, classes, (batch, *size), generator=generator)
    labels[:, :3] = IGNORE_INDEX
    return labels


def test_self_distillation_is_zero_for_identical_logits():
    output, labels = fake_output(0), make_labels(0)
    parts = losses.dovit_loss(output, labels, patch_size=16, alpha=1.0, beta=0.4,
                              teacher_logits=output.logits.clone())
    assert parts["sd"].abs().item() < 1e-6
    assert parts["loss"].item() == pytest.approx((parts["ce"] + parts["aux"]).item(), abs=1e-5)


def test_loss_is_ce_plus_alpha_aux_plus_beta_sd():
    output, labels, teacher = fake_output(1), make_labels(1), fake_output(2).logits
    alpha, beta = 0.7, 0.3
    parts = losses.dovit_loss(output, labels, patch_size=16, alpha=alpha, beta=beta, teacher_logits=teacher)
    # Each part, computed independently of dovit_loss:
    ce = F.cross_entropy(output.logits, labels, ignore_index=IGNORE_INDEX)
    aux = sum(F.cross_entropy(F.interpolate(a, size=(32, 32), mode="bilinear")[..., :20, :28], labels,
                              ignore_index=IGNORE_INDEX) for a in output.aux_logits)
    # KL(p_s || p_t): kl_div(input=log p_t, target=log p_s) sums p_s (log p_s - log p_t).
    sd = F.kl_div(F.log_softmax(teacher, 1), F.log_softmax(output.logits, 1), reduction="none",
                  log_target=True).sum(1).mean()
    assert parts["ce"].item() == pytest.approx(ce.item(), rel=1e-6)
    assert parts["aux"].item() == pytest.approx(aux.item(), rel=1e-5)
    assert parts["sd"].item() == pytest.approx(sd.item(), rel=1e-5) and sd.item() > 0
    assert parts["loss"].item() == pytest.approx((ce + alpha * aux + beta * sd).item(), rel=1e-5)
    # No teacher (dense stage, or beta = 0): sd is exactly zero.
    without = losses.dovit_loss(output, labels, patch_size=16, alpha=alpha, beta=beta)
    assert without["sd"].item() == 0.0
    assert without["loss"].item() == pytest.approx((ce + alpha * aux).item(), rel=1e-5)


def test_ignored_pixels_do_not_affect_the_loss():
    output, teacher = fake_output(3), fake_output(4).logits
    labels = make_labels(3)
    base = losses.dovit_loss(output, labels, 16, 1.0, 0.0, teacher)
    # Changing the predictions only where the label is ignored leaves CE and aux unchanged.
    ignored = (labels == IGNORE_INDEX).unsqueeze(1)
    output.logits = torch.where(ignored, output.logits + 5 * torch.randn_like(output.logits), output.logits)
    changed = losses.dovit_loss(output, labels, 16, 1.0, 0.0, teacher)
    assert changed["ce"].item() == pytest.approx(base["ce"].item(), rel=1e-6)


def test_class_weights_weight_the_decoder_and_aux_cross_entropy():
    output, labels = fake_output(5), make_labels(5)
    weights = torch.tensor([0.5, 1.0, 2.0, 4.0])
    parts = losses.dovit_loss(output, labels, 16, 1.0, 0.0, class_weights=weights)
    ce = F.cross_entropy(output.logits, labels, weight=weights, ignore_index=IGNORE_INDEX)
    aux = sum(F.cross_entropy(F.interpolate(a, size=(32, 32), mode="bilinear")[..., :20, :28], labels,
                              weight=weights, ignore_index=IGNORE_INDEX) for a in output.aux_logits)
    assert parts["ce"].item() == pytest.approx(ce.item(), rel=1e-6)
    assert parts["aux"].item() == pytest.approx(aux.item(), rel=1e-5)
    unweighted = losses.dovit_loss(output, labels, 16, 1.0, 0.0)
    assert parts["ce"].item() != pytest.approx(unweighted["ce"].item(), rel=1e-3)
