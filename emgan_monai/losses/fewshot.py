"""Losses of the few-shot GAN recipe: the true hinge loss, the non-saturating logistic loss and R1.

Unlike :class:`monai.losses.PatchAdversarialLoss` with ``criterion="hinge"`` (a hinge on ``tanh(logits)``, which can
never reach its margin of 1), these act on the raw logits as in Lim & Ye 2017 / Miyato et al. 2018 (hinge) and
Goodfellow et al. 2014 / Karras et al. 2020 (non-saturating with R1, Mescheder et al. 2018).
All losses average over every logit (batch and patch positions) and are computed in float32.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.nn import functional as F

from .adversarial import last_logits

__all__ = ["FEWSHOT_LOSSES", "discriminator_loss", "generator_loss", "r1_penalty"]

#: names accepted by :func:`discriminator_loss` / :func:`generator_loss`
FEWSHOT_LOSSES: tuple[str, ...] = ("hinge", "nonsaturating")


def _check(kind: str) -> str:
    kind = str(kind).lower()
    if kind not in FEWSHOT_LOSSES:
        raise ValueError(f"unknown loss {kind!r}; expected one of {FEWSHOT_LOSSES}.")
    return kind


def discriminator_loss(real_logits, fake_logits, kind: str = "hinge") -> tuple[torch.Tensor, torch.Tensor]:
    """Discriminator loss terms ``(loss_real, loss_fake)``; the total is their sum.

    - ``"hinge"``: ``mean(relu(1 - D(real)))`` and ``mean(relu(1 + D(fake)))`` (zero once the margin is met);
    - ``"nonsaturating"``: ``mean(softplus(-D(real)))`` and ``mean(softplus(D(fake)))`` (binary cross-entropy on
      logits).

    Parameters
    ----------
    real_logits, fake_logits
        Raw discriminator outputs (tensors or lists whose last item is the logits), any shape ``(B, ...)``.
    """
    kind = _check(kind)
    r, f = last_logits(real_logits).float(), last_logits(fake_logits).float()
    if kind == "hinge":
        return F.relu(1.0 - r).mean(), F.relu(1.0 + f).mean()
    return F.softplus(-r).mean(), F.softplus(f).mean()


def generator_loss(fake_logits, kind: str = "hinge") -> torch.Tensor:
    """Generator loss: ``-mean(D(fake))`` (hinge) or ``mean(softplus(-D(fake)))`` (non-saturating)."""
    kind = _check(kind)
    f = last_logits(fake_logits).float()
    return -f.mean() if kind == "hinge" else F.softplus(-f).mean()


def r1_penalty(real_logits: torch.Tensor | Sequence[torch.Tensor], real_input: torch.Tensor) -> torch.Tensor:
    """R1 penalty ``E_x[ ||grad_x s(x)||^2 ]`` on real inputs (Mescheder et al. 2018).

    ``s(x)`` is the per-image score: the logit of a global discriminator, the mean of the patch logits of a patch
    discriminator (the score its loss averages). Summing the patch logits instead would multiply the penalty by the
    squared number of patches (65,536 for a 16 x 16 logit map), which in our measurements stopped a spectral-norm
    skip-patch discriminator from learning at any useful ``gamma``. ``real_input`` must have ``requires_grad=True``
    and ``real_logits`` must have been computed from it. The result keeps the graph (``create_graph=True``) so it
    can be back-propagated into the discriminator; weight it by ``gamma / 2``.
    """
    logits = last_logits(real_logits)
    if not real_input.requires_grad:
        raise ValueError("r1_penalty: real_input must require grad and be the input that produced real_logits.")
    score = logits.float().flatten(1).mean(1)
    (grad,) = torch.autograd.grad(outputs=score.sum(), inputs=real_input, create_graph=True)
    return grad.float().pow(2).flatten(1).sum(1).mean()
