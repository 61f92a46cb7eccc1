"""Classifier two-sample test (C2ST): a judge that learns what gives a fake away.

A small CNN is trained to tell real from generated patches and scored on patches of images it never saw
(Lopez-Paz and Oquab, "Revisiting classifier two-sample tests", ICLR 2017). Held-out accuracy 0.5 means the two sets
cannot be told apart by this judge; 1.0 means every patch is recognised. Unlike a statistic that a generator may have
been trained to match (spectra, grey-value histograms, texture features), the classifier looks for whatever
differs, so it is the headline judge of a generator; report it with reference points from the same run (real vs
real for the floor, degraded real images, a naive synthesis for the ceiling) and over several seeds.

- :func:`random_patches`: ``n`` random square patches ``(n, C, p, p)`` of a stack of images ``(N, C, H, W)``;
- :func:`classifier_two_sample_test`: train on ``(real_train, fake_train)``, test on ``(real_test, fake_test)``, per
  seed; returns the mean held-out accuracy, its standard deviation and the per-seed values;
- :func:`two_sample_table`: the test for several sets of images at once (a generator and its reference points), on
  random patches of each, the table of an evaluation.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence

import numpy as np
import torch
from monai.networks.nets import Classifier

__all__ = ["classifier_two_sample_test", "random_patches", "two_sample_table"]

logger = logging.getLogger(__name__)


def random_patches(images: torch.Tensor, size: int, n: int, seed: int = 0) -> torch.Tensor:
    """``n`` random ``size`` x ``size`` patches of ``images`` ``(N, C, H, W)`` -> ``(n, C, size, size)``.

    Patches are drawn uniformly over images and positions with a generator seeded by ``seed``.
    """
    if images.ndim != 4:
        raise ValueError(f"random_patches expects (N, C, H, W) images, got shape {tuple(images.shape)}")
    N, _, H, W = images.shape
    if size > min(H, W):
        raise ValueError(f"patch size {size} is larger than the images ({H} x {W})")
    g = torch.Generator().manual_seed(int(seed))
    idx = torch.randint(0, N, (n,), generator=g)
    ys = torch.randint(0, H - size + 1, (n,), generator=g)
    xs = torch.randint(0, W - size + 1, (n,), generator=g)
    return torch.stack([images[i, :, y : y + size, x : x + size] for i, y, x in zip(idx, ys, xs)])


def _balanced(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Both sets cut to the size of the smaller one (an accuracy of 0.5 then means chance)."""
    n = min(len(a), len(b))
    return a[:n], b[:n]


def _judge(in_shape: Sequence[int], channels: Sequence[int]) -> torch.nn.Module:
    """A small strided CNN with one logit: ``(B, C, p, p) -> (B, 1)``."""
    return Classifier(
        in_shape=tuple(in_shape),
        classes=1,
        channels=tuple(channels),
        strides=(2,) * len(channels),
        dropout=0.1,
        last_act=None,
    )


def classifier_two_sample_test(
    real_train: torch.Tensor,
    fake_train: torch.Tensor,
    real_test: torch.Tensor,
    fake_test: torch.Tensor,
    seeds: Sequence[int] = (0, 1, 2),
    steps: int = 400,
    batch_size: int = 64,
    channels: Sequence[int] = (16, 32, 64),
    lr: float = 1e-3,
) -> dict:
    """Held-out accuracy of a CNN trained to tell real from fake patches, over ``seeds``.

    Parameters
    ----------
    real_train, fake_train
        Training patches ``(N, C, p, p)`` (cut to equal numbers). Draw them from images other than the test
        patches' (e.g. different sections), so the judge cannot recognise an image instead of a distribution.
    real_test, fake_test
        Held-out patches ``(M, C, p, p)`` (cut to equal numbers).
    seeds
        One trained judge per seed (initialisation and batch order).
    steps, batch_size, channels, lr
        Training of each judge: Adam, binary cross-entropy, horizontal/vertical flips of every batch.

    Returns
    -------
    dict
        ``{"accuracy": mean, "accuracy_sd": sd over seeds, "per_seed": [...], "n_train": per class,
        "n_test": per class}``.
    """
    real_train, fake_train = _balanced(real_train.float(), fake_train.float())
    real_test, fake_test = _balanced(real_test.float(), fake_test.float())
    if len(real_train) < 2 or len(real_test) < 1:
        raise ValueError("classifier_two_sample_test needs at least 2 training and 1 test patch per class")
    x_train = torch.cat([real_train, fake_train])
    y_train = torch.cat([torch.ones(len(real_train)), torch.zeros(len(fake_train))])
    x_test = torch.cat([real_test, fake_test])
    y_test = torch.cat([torch.ones(len(real_test)), torch.zeros(len(fake_test))])
    accuracies = []
    for seed in seeds:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seed))
            net = _judge(x_train.shape[1:], channels)
            opt = torch.optim.Adam(net.parameters(), lr=lr)
            net.train()
            for _ in range(int(steps)):
                idx = torch.randint(0, len(x_train), (min(batch_size, len(x_train)),))
                xb, yb = x_train[idx], y_train[idx]
                if torch.rand(()) < 0.5:
                    xb = xb.flip(-1)
                if torch.rand(()) < 0.5:
                    xb = xb.flip(-2)
                loss = torch.nn.functional.binary_cross_entropy_with_logits(net(xb).view(-1), yb)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            net.eval()
            with torch.no_grad():
                pred = torch.cat([net(x_test[i : i + 256]).view(-1) for i in range(0, len(x_test), 256)]) > 0
            accuracies.append(float((pred.float() == y_test).float().mean()))
    acc = np.asarray(accuracies)
    return {
        "accuracy": float(acc.mean()),
        "accuracy_sd": float(acc.std(ddof=1)) if len(acc) > 1 else 0.0,
        "per_seed": accuracies,
        "n_train": len(real_train),
        "n_test": len(real_test),
    }


def two_sample_table(
    sets: Mapping[str, Sequence[torch.Tensor]],
    patch: int = 64,
    steps: int = 400,
    seeds: int = 3,
    n_train: int = 512,
    n_test: int = 256,
    channels: Sequence[int] = (16, 32, 64),
) -> dict:
    """:func:`classifier_two_sample_test` of every set of images in ``sets``, on random ``patch``-px patches.

    Parameters
    ----------
    sets
        ``{name: (real_train, fake_train, real_test, fake_test)}``, images ``(N, C, H, W)``: the judge is trained on
        patches of the first two and scored on patches of the last two (take them from different images).
    patch
        Patch side in px (at most the images' side).
    steps, seeds
        Training steps of each judge and the number of judges (seeds ``0 .. seeds - 1``).
    n_train, n_test
        Patches per class drawn for training and testing (:func:`random_patches` with seeds 0, 1, 2, 3 for the four
        image sets, so every row sees patches drawn the same way).
    channels
        Widths of the judge's strided convolutions (one per halving of the patch); a wider, deeper judge trained
        longer sees more before a low accuracy is trusted.

    Returns
    -------
    dict
        ``{"rows": {name: classifier_two_sample_test result}, "patch", "steps", "seeds", "n_train_patches",
        "n_test_patches"}``, rows in the order of ``sets``.
    """
    rows = {}
    for name, (real_tr, fake_tr, real_te, fake_te) in sets.items():
        start = time.time()
        rows[name] = classifier_two_sample_test(
            random_patches(real_tr, patch, n_train, 0),
            random_patches(fake_tr, patch, n_train, 1),
            random_patches(real_te, patch, n_test, 2),
            random_patches(fake_te, patch, n_test, 3),
            seeds=range(int(seeds)),
            steps=steps,
            channels=channels,
        )
        row = rows[name]
        logger.info(
            "two-sample test %s: accuracy %.3f (sd %.3f) in %.0f s",
            name,
            row["accuracy"],
            row["accuracy_sd"],
            time.time() - start,
        )
    return {
        "rows": rows,
        "patch": int(patch),
        "steps": int(steps),
        "seeds": list(range(int(seeds))),
        "n_train_patches": int(n_train),
        "n_test_patches": int(n_test),
        "channels": [int(c) for c in channels],
    }
