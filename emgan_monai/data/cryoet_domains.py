"""The cryo-ET GAN's two domains cut from the DeepFinder toy layout, and the datalists the bundle trains on.

Setting used by ``bundles/cryoet_gan`` (see its ``docs/README.md`` for the reasons):

* domain **S** (subtomograms): particles cut at the positions of the DeepFinder toy object lists
  (``tomoN_data.h5`` + ``tomoN_objlist.xml``), classes 1..9, in the HDF5 axis order (axis 0 = beam);
* domain **D** (noise-free density / shape maps): the *object map* of the same particle, i.e. the connected
  component of its class label in ``tomoN_target.h5`` cut at the same position (:func:`object_map`),
  Gaussian-smoothed (:func:`shape_map`). This gives every D map a known class and pose, so generated subtomograms
  can be classified and compared voxel-wise (SSIM) with the real subtomogram of the same particle.

:func:`load_deepfinder_domains` returns both as a :class:`CryoETDomains`; :func:`cyclegan_datalist` (unpaired
training items), :func:`paired_datalist` (validation items of the same particle) and :func:`classifier_datalist`
turn it into MONAI datalists, in the network ranges of :mod:`emgan_monai.transforms.cryoet_value_range`.
Volumes are ``(D, H, W)`` / ``(B, B, B)`` float32 numpy arrays; datalist items hold ``(1, B, B, B)`` arrays.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from emgan_monai.data.cryoet import ZScoreStats, subtomograms_from_deepfinder, zscore
from emgan_monai.transforms.cryoet_value_range import density_to_network, subtomo_to_network
from emgan_monai.transforms.density_maps import shape_map

__all__ = [
    "CryoETDomains",
    "classifier_datalist",
    "cyclegan_datalist",
    "load_deepfinder_domains",
    "object_map",
    "paired_datalist",
]


def object_map(target_box: np.ndarray, label: int) -> np.ndarray:
    """Binary mask of the particle of class ``label`` at the centre of a cut label volume.

    The connected component (26-connectivity) of ``target_box == label`` nearest to the box centre is kept;
    neighbouring particles are dropped, so the map holds one macromolecule as a density map would.

    Parameters
    ----------
    target_box
        ``(B, B, B)`` label volume cut at the particle position (e.g. from ``tomoN_target.h5``).
    label
        The particle's class.

    Returns
    -------
    np.ndarray
        ``(B, B, B)`` float32 mask (all zeros if the label is absent).
    """
    target_box = np.asarray(target_box)
    mask = np.isclose(target_box, label)
    components, n = ndimage.label(mask, structure=np.ones((3, 3, 3)))
    if n == 0:
        return np.zeros(target_box.shape, dtype=np.float32)
    centre = (np.asarray(target_box.shape) - 1) / 2.0
    coms = np.asarray(ndimage.center_of_mass(mask, components, range(1, n + 1)), dtype=np.float64).reshape(n, 3)
    nearest = int(np.argmin(np.linalg.norm(coms - centre, axis=1))) + 1
    return (components == nearest).astype(np.float32)


@dataclass
class CryoETDomains:
    """Paired views of the same particles (pairing used only for evaluation, never for training).

    Attributes
    ----------
    density
        ``(N, B, B, B)`` float32 shape maps in ``[0, 1]`` (domain D).
    subtomo
        ``(N, B, B, B)`` float32 raw subtomograms (domain S, not normalised).
    mask
        ``(N, B, B, B)`` float32 binary object masks (before smoothing).
    label
        ``(N,)`` int64 class labels (1-based, as in the object lists).
    tomo
        ``(N,)`` int64 tomogram index of every particle.
    """

    density: np.ndarray
    subtomo: np.ndarray
    mask: np.ndarray
    label: np.ndarray
    tomo: np.ndarray

    def __len__(self) -> int:
        return int(self.label.shape[0])

    def stats(self) -> ZScoreStats:
        """Per-dataset z-score statistics of the subtomograms."""
        return ZScoreStats.fit(self.subtomo)


def load_deepfinder_domains(
    dataset_dir: str | Path,
    tomos: Sequence[int],
    box: int = 32,
    sigma: float = 1.0,
    binning: int = 1,
    subdir: str = "deepfinder_toy",
) -> CryoETDomains:
    """Cut domain S (``tomoN_data.h5``) and domain D (``tomoN_target.h5`` object maps) at every particle.

    With ``binning = b > 1`` boxes of ``box * b`` voxels are cut at full resolution and block-averaged
    (:func:`skimage.measure.block_reduce`) to ``box``; the object mask becomes a partial-volume occupancy map,
    binarised at an occupancy of one half; that binary mask is both ``mask`` and (smoothed) the shape map.

    Parameters
    ----------
    dataset_dir
        Folder holding ``<subdir>/tomoN_{data,target}.h5`` and ``tomoN_objlist.xml`` (or those files directly).
    tomos
        Tomogram numbers ``N`` to read.
    box
        Cube edge in voxels (divisible by 4 for the generators).
    sigma
        Gaussian smoothing of the object masks (see :func:`shape_map`), in output voxels.
    binning
        Integer binning factor applied before ``box`` (1 = none).
    subdir
        Sub-folder of ``dataset_dir`` with the toy data; ignored when absent.

    Returns
    -------
    CryoETDomains
        All particles of the listed tomograms (boxes leaving the tomogram are padded with its mean).

    Raises
    ------
    ValueError
        If a tomogram's files are missing or the list of tomograms is empty.
    """
    root = Path(dataset_dir)
    if (root / subdir).is_dir():
        root = root / subdir
    if not tomos:
        raise ValueError("tomos must list at least one tomogram number")
    if int(binning) < 1:
        raise ValueError(f"binning must be a positive integer, got {binning}")
    from skimage.measure import block_reduce

    b = int(binning)

    def _bin(v: np.ndarray) -> np.ndarray:
        return v if b == 1 else block_reduce(v, (b, b, b), np.mean).astype(np.float32)

    dens, subs, masks, labels, tomo_ids = [], [], [], [], []
    for n in tomos:
        data, target, xml = (root / f"tomo{n}_data.h5", root / f"tomo{n}_target.h5", root / f"tomo{n}_objlist.xml")
        missing = [str(p) for p in (data, target, xml) if not p.is_file()]
        if missing:
            raise ValueError(f"{root}: DeepFinder tomogram {n} is incomplete, missing {missing}")
        items = subtomograms_from_deepfinder(data, xml, box=box * b, border="pad")
        targets = subtomograms_from_deepfinder(target, xml, box=box * b, border="pad")
        for (sub, label, _), (tgt, _, _) in zip(items, targets):
            occupancy = _bin(object_map(tgt, label))
            mask = (occupancy >= 0.5).astype(np.float32)  # one rule for the mask and the shape map
            subs.append(_bin(sub))
            masks.append(mask)
            dens.append(shape_map(mask, iso=0.5, sigma=sigma) if mask.any() else np.zeros_like(mask))
            labels.append(label)
            tomo_ids.append(n)
    return CryoETDomains(
        density=np.stack(dens).astype(np.float32),
        subtomo=np.stack(subs).astype(np.float32),
        mask=np.stack(masks).astype(np.float32),
        label=np.asarray(labels, dtype=np.int64),
        tomo=np.asarray(tomo_ids, dtype=np.int64),
    )


def cyclegan_datalist(domains: CryoETDomains, seed: int = 0) -> list[dict[str, Any]]:
    """Unpaired CycleGAN items: ``{"density": (1, B, B, B) in [-1, 1], "subtomo": (1, B, B, B) in [-1, 1]}``.

    The subtomograms are z-scored with the dataset's own statistics and shuffled with ``seed`` so that item ``i``
    pairs the map of one particle with the subtomogram of another (the CycleGAN losses never compare the two).
    """
    stats = domains.stats()
    perm = np.random.default_rng(seed).permutation(len(domains))
    return [
        {
            "density": density_to_network(domains.density[i])[None],
            "subtomo": subtomo_to_network(zscore(domains.subtomo[j], stats))[None],
        }
        for i, j in zip(range(len(domains)), perm)
    ]


def paired_datalist(domains: CryoETDomains) -> list[dict[str, Any]]:
    """Validation items of the same particle: ``{"image": map (1, B, B, B) in [-1, 1], "label": subtomo in [-1, 1]}``."""
    stats = domains.stats()
    return [
        {"image": density_to_network(d)[None], "label": subtomo_to_network(zscore(s, stats))[None]}
        for d, s in zip(domains.density, domains.subtomo)
    ]


def classifier_datalist(domains: CryoETDomains) -> list[dict[str, Any]]:
    """Classifier items ``{"image": (1, B, B, B) z-scored subtomogram, "label": class - 1}`` (0-based)."""
    stats = domains.stats()
    return [{"image": zscore(s, stats)[None], "label": int(k) - 1} for s, k in zip(domains.subtomo, domains.label)]
