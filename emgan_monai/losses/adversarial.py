"""Adversarial losses for patch discriminators and Wasserstein critics.

``AdversarialLoss`` wraps :class:`monai.losses.PatchAdversarialLoss` for the ``"bce"``, ``"least_squares"`` and
``"hinge"`` criteria and adds the Wasserstein (critic) loss that MONAI lacks. ``gradient_penalty`` (WGAN-GP,
Gulrajani et al. 2017) and ``clip_weights`` (WGAN, Arjovsky et al. 2017) enforce the critic's Lipschitz constraint.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.losses import PatchAdversarialLoss
from torch import nn

__all__ = ["AdversarialLoss", "ADVERSARIAL_CRITERIA", "gradient_penalty", "clip_weights", "last_logits"]

#: criteria accepted by :class:`AdversarialLoss`
ADVERSARIAL_CRITERIA: tuple[str, ...] = ("bce", "least_squares", "hinge", "wasserstein")


def last_logits(logits: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
    """Return the logits tensor of a discriminator output.

    Parameters
    ----------
    logits
        A tensor, or a list/tuple of tensors as returned by :class:`monai.networks.nets.PatchDiscriminator`
        (intermediate features followed by the logits): the last item is used.

    Returns
    -------
    torch.Tensor
        The logits, e.g. ``(B, 1, H', W'[, D'])`` for a patch discriminator or ``(B, 1)`` for a global critic.
    """
    if isinstance(logits, torch.Tensor):
        return logits
    if isinstance(logits, (list, tuple)) and len(logits) > 0 and isinstance(logits[-1], torch.Tensor):
        return logits[-1]
    raise ValueError(f"discriminator output must be a tensor or a non-empty list of tensors, got {type(logits)!r}.")


class AdversarialLoss(nn.Module):
    """Adversarial loss for a discriminator or critic, applied to raw logits (no final activation).

    Parameters
    ----------
    criterion
        ``"bce"`` (vanilla GAN, sigmoid + binary cross-entropy), ``"least_squares"`` (LSGAN, MSE to 1/0 on the raw
        logits), ``"hinge"`` (MONAI's hinge on ``tanh(logits)``) or ``"wasserstein"`` (WGAN critic: the mean
        score, see :meth:`forward`).

    Notes
    -----
    The first three criteria reuse :class:`monai.losses.PatchAdversarialLoss` (least squares with
    ``no_activation_leastsq=True``, i.e. the LSGAN loss of Mao et al. 2017 as used by pix2pix/CycleGAN). The loss is
    always evaluated in float32 with autocast disabled: ``torch.nn.BCELoss`` is not autocast-safe.
    """

    def __init__(self, criterion: str = "bce") -> None:
        super().__init__()
        criterion = str(criterion).lower()
        if criterion not in ADVERSARIAL_CRITERIA:
            raise ValueError(f"unknown adversarial criterion {criterion!r}; expected one of {ADVERSARIAL_CRITERIA}.")
        self.criterion = criterion
        self.patch_loss: PatchAdversarialLoss | None = None
        if criterion != "wasserstein":
            self.patch_loss = PatchAdversarialLoss(
                reduction="mean", criterion=criterion, no_activation_leastsq=criterion == "least_squares"
            )

    @property
    def is_wasserstein(self) -> bool:
        """Whether this is the Wasserstein critic loss (no sigmoid, weight clipping or gradient penalty apply)."""
        return self.criterion == "wasserstein"

    def forward(
        self, logits: torch.Tensor | Sequence[torch.Tensor], target_is_real: bool, for_discriminator: bool
    ) -> torch.Tensor:
        """Compute the loss of one discriminator output.

        Parameters
        ----------
        logits
            Raw discriminator output ``(B, 1, ...)``, or a list whose last item is the logits
            (:class:`monai.networks.nets.PatchDiscriminator`).
        target_is_real
            Whether ``logits`` were computed on real images. Must be ``True`` when ``for_discriminator`` is
            ``False`` (the generator wants its fakes judged real).
        for_discriminator
            ``True`` for the discriminator/critic update, ``False`` for the generator update.

        Returns
        -------
        torch.Tensor
            Scalar (0-dim) float32 loss. Wasserstein: critic ``-mean(logits)`` for reals and ``+mean(logits)`` for
            fakes (their sum is ``-mean(D(real)) + mean(D(fake))``); generator ``-mean(D(fake))``.
        """
        if not for_discriminator and not target_is_real:
            raise ValueError("the generator loss needs target_is_real=True (fakes should be judged real).")
        x = last_logits(logits)
        with torch.autocast(device_type=x.device.type, enabled=False):
            x = x.float()
            if self.patch_loss is None:
                return -x.mean() if target_is_real else x.mean()
            return self.patch_loss(x, target_is_real=target_is_real, for_discriminator=for_discriminator)

    def extra_repr(self) -> str:
        return f"criterion={self.criterion!r}"


def gradient_penalty(
    critic: nn.Module, real: torch.Tensor, fake: torch.Tensor, generator: torch.Generator | None = None
) -> torch.Tensor:
    """WGAN-GP gradient penalty ``E[(||grad_x D(x_hat)||_2 - 1)^2]`` on random interpolates.

    ``x_hat = eps * real + (1 - eps) * fake`` with one ``eps ~ U[0, 1)`` per sample. ``D(x_hat)`` is the per-sample
    **mean** of the critic's scores (patch scores of a PatchGAN critic are averaged), i.e. the same reduction as the
    Wasserstein / least-squares / hinge losses of :class:`AdversarialLoss`, so the penalty constrains the function
    that the loss actually uses (the gradient of the *sum* of ``P`` patch scores would be ``P`` times larger).

    Parameters
    ----------
    critic
        Critic network mapping ``(B, C, H, W[, D])`` to scores (a tensor or a list whose last item is the scores).
    real, fake
        Real and generated images ``(B, C, H, W[, D])`` of identical shape; ``fake`` is detached here.
    generator
        Random generator for ``eps``; it may live on another device than the images (``eps`` is drawn on the
        generator's device then moved). ``None`` uses the global torch generator.

    Returns
    -------
    torch.Tensor
        Scalar penalty, differentiable w.r.t. the critic parameters (``create_graph=True``).
    """
    if real.shape != fake.shape:
        raise ValueError(f"real and fake must have the same shape, got {tuple(real.shape)} and {tuple(fake.shape)}.")
    if real.ndim < 2:
        raise ValueError(f"expected batched images (B, C, ...), got shape {tuple(real.shape)}.")
    gen_device = generator.device if generator is not None else real.device
    eps = torch.rand(real.shape[0], generator=generator, device=gen_device, dtype=torch.float32)
    eps = eps.to(device=real.device, dtype=real.dtype).view(-1, *([1] * (real.ndim - 1)))
    interpolates = (eps * real.detach() + (1.0 - eps) * fake.detach()).requires_grad_(True)
    scores = last_logits(critic(interpolates)).float()
    per_sample = scores.reshape(scores.shape[0], -1).mean(1)
    (grads,) = torch.autograd.grad(outputs=per_sample.sum(), inputs=interpolates, create_graph=True, retain_graph=True)
    return ((grads.flatten(1).norm(2, dim=1) - 1.0) ** 2).mean()


@torch.no_grad()
def clip_weights(module: nn.Module, clip_value: float) -> None:
    """Clamp the weights of ``module`` in place to ``[-clip_value, clip_value]`` (original WGAN).

    Only the weights that the forward pass uses are clipped: every parameter named ``weight`` (convolutions, linear
    layers, affine norms). Biases are left alone (they do not change the Lipschitz constant). A critic whose weights
    are re-parametrised (e.g. :func:`torch.nn.utils.parametrizations.spectral_norm`) is refused: clipping the raw
    ``original`` tensor bounds nothing, because the forward pass divides it by its spectral norm again. Build the
    clipping critic without spectral norm (``SpectralNormCritic(spectral_norm=False)``).

    Parameters
    ----------
    module
        The critic (plain or wrapped in ``DistributedDataParallel``).
    clip_value
        Positive bound ``c``.

    Raises
    ------
    ValueError
        ``clip_value <= 0`` or a parametrised weight.
    """
    from torch.nn.utils import parametrize

    if clip_value <= 0:
        raise ValueError(f"clip_value must be positive, got {clip_value}.")
    for name, sub in module.named_modules():
        if parametrize.is_parametrized(sub):
            raise ValueError(
                f"clip_weights: {name or type(sub).__name__} has parametrised weights (spectral norm?); clipping their "
                "raw values does not bound the critic. Build the critic without spectral norm for weight clipping."
            )
        w = getattr(sub, "weight", None)
        if isinstance(w, nn.Parameter):
            w.clamp_(-clip_value, clip_value)
