"""The two-stage Drosophila generator as one module: latent grid -> mitochondria/membrane mask -> EM image.

- :class:`TwoStageGenerator`: ``(B, C_z, H/f, W/f)`` latents -> ``(B, 4, H, W)``: EM then the one-hot mask
  (mitochondria, membrane, background), so that a bundle's ``network_def`` + ``models/model.pt`` is the whole
  generator (``inference.json``, ``monai.bundle ckpt_export``);
- :func:`hard_mask`: stage-1 output (class probabilities or signed-distance maps) -> one-hot mask, what stage 2 was
  trained on (threshold, specks under :data:`MIN_MITO_SIZE` px dropped, membrane outlines closed by a watershed);
- :func:`threshold_onehot`: the same decoding without dropping specks or closing outlines, in torch (TorchScript);
- :func:`random_symmetry`: each sample under one of the 8 symmetries of the square.

Both stages may inject noise (``torch.randn`` from the global generator, also in ``eval()`` mode) and
:func:`random_symmetry` draws from it: seed it (``torch.manual_seed``) for reproducible samples.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

__all__ = ["MIN_MITO_SIZE", "TwoStageGenerator", "hard_mask", "random_symmetry", "threshold_onehot"]

#: mitochondria under this many pixels are dropped when distance maps are decoded (:func:`hard_mask`): the annotated
#: mitochondria of the Drosophila stack at the training scale (256 px sections) are 21 px or more but one of 384 (13
#: px); generated maps leave specks of a few pixels where the mitochondria map grazes zero.
MIN_MITO_SIZE = 20


def hard_mask(soft: torch.Tensor, close_membranes: bool = True, min_mito_size: int = MIN_MITO_SIZE) -> torch.Tensor:
    """Stage-1 output -> one-hot mask ``(B, 3, H, W)`` float (mitochondria, membrane, background), as fed to stage 2.

    ``(B, 3, H, W)`` class probabilities: arg-max. ``(B, 2, H, W)`` signed-distance maps (mitochondria, membrane;
    a generator with ``output="tanh"`` trained on :class:`~emgan_monai.transforms.OneHotToDistanceMap` masks):
    :class:`~emgan_monai.transforms.DistanceMapToOneHot` (numpy / scikit-image), with the membrane outlines closed by
    a watershed when ``close_membranes`` and mitochondria smaller than ``min_mito_size`` px dropped
    (:data:`MIN_MITO_SIZE`; 0 keeps them).
    """
    if soft.shape[1] == 2:
        from emgan_monai.transforms.mask_distance import DistanceMapToOneHot

        return DistanceMapToOneHot(close_channel=1 if close_membranes else None, min_size=[int(min_mito_size), 0])(
            soft, batched=True
        )
    if soft.shape[1] != 3:
        raise ValueError(
            f"hard_mask: expected 3 class probabilities or 2 distance maps, got shape {tuple(soft.shape)}."
        )
    return torch.nn.functional.one_hot(soft.argmax(1), soft.shape[1]).movedim(-1, 1).to(soft.dtype)


def threshold_onehot(maps: torch.Tensor) -> torch.Tensor:
    """Signed-distance maps ``(B, N, H, W)`` -> one-hot ``(B, N + 1, H, W)``: a pixel belongs to the first channel above
    0 (earlier channels win), else to the background (last channel). :func:`hard_mask` with ``close_membranes=False``
    and ``min_mito_size=0``, in torch only (TorchScript)."""
    n = maps.shape[1]
    label = torch.full_like(maps[:, 0], n, dtype=torch.long)
    for k in range(n - 1, -1, -1):  # earlier channels win: write them last
        label = torch.where(maps[:, k] > 0.0, torch.full_like(label, k), label)
    return torch.nn.functional.one_hot(label, n + 1).movedim(-1, 1).to(maps.dtype)


def random_symmetry(x: torch.Tensor) -> torch.Tensor:
    """Each sample of ``x`` ``(B, C, H, W)`` (``H == W``) under one of the 8 symmetries of the square, drawn from torch's
    global generator (``B`` rotations by ``k * 90`` degrees, then ``B`` flips of the last axis applied first).

    The few-shot recipe shows the discriminator every real and fake under a random flip / 90-degree rotation
    (DiffAugment ``flip_rot``), so the generator's distribution is learned only up to these symmetries: it may draw
    every sample in one orientation. The real data are symmetric under them (training augments with them too), so
    applying a random one to each sample draws from the symmetrised distribution the discriminator judged.
    """
    if x.shape[-1] != x.shape[-2]:
        raise ValueError(f"random_symmetry needs square images, got {list(x.shape)}.")
    k = torch.randint(0, 4, [x.shape[0]])
    flip = torch.randint(0, 2, [x.shape[0]])
    out = []
    for i in range(x.shape[0]):
        xi = x[i].flip([-1]) if bool(flip[i] != 0) else x[i]
        out.append(torch.rot90(xi, int(k[i]), [-2, -1]))
    return torch.stack(out)


class TwoStageGenerator(nn.Module):
    """Noise -> mask -> EM: ``em_generator(decode(mask_generator(z)))``, returned with the mask.

    ``forward``: latents ``(B, C_z, h, w)`` -> ``(B, 1 + 3, H, W)`` float32: channel 0 the EM image in [0, 1]
    (``em_generator``'s output clamped), channels 1-3 the one-hot mask it was drawn from (mitochondria, membrane,
    background). The stage-1 output is decoded as :func:`hard_mask` does: 2 signed-distance maps are thresholded,
    mitochondria under ``min_mito_size`` px dropped and membrane outlines closed by a watershed, and each mask is put
    under a random symmetry of the square (:func:`random_symmetry`, when ``symmetrise`` and the masks are square);
    3 class probabilities (the paper's softmax generator) are arg-maxed and left as drawn.

    TorchScript: the watershed closing and the speck removal are numpy / scikit-image and run in Python only. A
    scripted module (``torch.jit.script``, ``monai.bundle ckpt_export``) decodes distance maps by
    :func:`threshold_onehot`: the same thresholds, without dropping small mitochondria and without closing membrane
    gaps; everything else (both networks, their injected noise, the symmetries) is the same, draw for draw.

    Parameters
    ----------
    mask_generator
        Stage 1, ``(B, C_z, h, w) -> (B, 2, H, W)`` signed-distance maps in (-1, 1) or ``(B, 3, H, W)`` class
        probabilities (e.g. :class:`~emgan_monai.networks.mask_generator.LatentGridMaskGenerator`).
    em_generator
        Stage 2, one-hot mask ``(B, 3, H, W)`` -> EM ``(B, 1, H, W)`` (e.g. :class:`~emgan_monai.networks.NoiseUNet`).
    close_membranes, min_mito_size
        Decoding of distance maps in Python (:func:`hard_mask`).
    symmetrise
        Put each decoded mask under a random symmetry of the square.

    Examples
    --------
    The state dict is the two stages' under the prefixes ``mask_generator.`` and ``em_generator.``
    (:meth:`combine_state_dicts`).
    """

    def __init__(
        self,
        mask_generator: nn.Module,
        em_generator: nn.Module,
        close_membranes: bool = True,
        min_mito_size: int = MIN_MITO_SIZE,
        symmetrise: bool = True,
    ) -> None:
        super().__init__()
        self.mask_generator = mask_generator
        self.em_generator = em_generator
        self.close_membranes = bool(close_membranes)
        self.min_mito_size = int(min_mito_size)
        self.symmetrise = bool(symmetrise)

    @staticmethod
    def combine_state_dicts(
        mask_state: Mapping[str, torch.Tensor], em_state: Mapping[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        """The state dict of a :class:`TwoStageGenerator` from its stages' state dicts."""
        return {
            **{f"mask_generator.{k}": v for k, v in mask_state.items()},
            **{f"em_generator.{k}": v for k, v in em_state.items()},
        }

    @torch.jit.unused
    def _decode_python(self, maps: torch.Tensor) -> torch.Tensor:
        return hard_mask(maps, close_membranes=self.close_membranes, min_mito_size=self.min_mito_size)

    def masks(self, z: torch.Tensor) -> torch.Tensor:
        """One-hot masks ``(B, 3, H, W)`` (mitochondria, membrane, background) of latents ``z``: stage 1, decoded."""
        out = self.mask_generator(z)
        if out.shape[1] == 3:  # class probabilities: arg-max, left as drawn
            return torch.nn.functional.one_hot(out.argmax(1), 3).movedim(-1, 1).to(out.dtype)
        if out.shape[1] != 2:
            raise ValueError(
                f"TwoStageGenerator: stage 1 gave {out.shape[1]} channels; expected 2 distance maps "
                "(mitochondria, membrane) or 3 class probabilities."
            )
        if torch.jit.is_scripting():
            mask = threshold_onehot(out)
        else:
            mask = self._decode_python(out)
        if self.symmetrise and mask.shape[-1] == mask.shape[-2]:
            mask = random_symmetry(mask)
        return mask

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """``(B, C_z, h, w)`` latents -> ``(B, 4, H, W)``: EM in [0, 1], then the one-hot mask it was drawn from."""
        mask = self.masks(z)
        em = self.em_generator(mask).clamp(0.0, 1.0)
        return torch.cat([em, mask.to(em.dtype)], dim=1)
