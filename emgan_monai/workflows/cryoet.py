"""CryoETGAN bundle routines: domains, unpaired datalists, synthesis, MC-dropout uncertainty, evaluation.

Setting used by ``bundles/cryoet_gan`` (see its ``docs/README.md`` for the reasons):

* domain **S** (subtomograms): particles cut at the positions of the DeepFinder toy object lists
  (``tomoN_data.h5`` + ``tomoN_objlist.xml``), classes 1..9, in the HDF5 axis order (axis 0 = beam);
* domain **D** (noise-free density / shape maps): the *object map* of the same particle, i.e. the connected
  component of its class label in ``tomoN_target.h5`` cut at the same position, Gaussian-smoothed
  (:func:`shape_map`). This gives every D map a known class and pose, so generated subtomograms can be
  classified and compared voxel-wise (SSIM) with the real subtomogram of the same particle.

Value ranges: D maps in ``[0, 1]`` are fed to the networks as ``2 m - 1``; subtomograms are z-scored per dataset
(:class:`~emgan_monai.data.cryoet.ZScoreStats`) and fed as ``clip(z / SUBTOMO_SCALE, -1, 1)`` to match the
generator's ``tanh``; generated subtomograms are written back in z units (``SUBTOMO_SCALE * y``).
Volumes handled here are ``(D, H, W)`` numpy arrays and ``(B, 1, D, H, W)`` tensors.
"""

from __future__ import annotations

import itertools
import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy import ndimage
from torch import nn

from emgan_monai.data.cryoet import (
    DENSITY_SUFFIXES,
    ZScoreStats,
    density_datalist,
    load_density,
    subtomograms_from_deepfinder,
    zscore,
)
from emgan_monai.io import write_image
from emgan_monai.physics.cryoet import simulate_subtomogram
from emgan_monai.visualize import montage, to_uint8

__all__ = [
    "SUBTOMO_SCALE",
    "CryoETDomains",
    "classifier_datalist",
    "cyclegan_datalist",
    "density_input",
    "density_to_network",
    "estimate_snr",
    "evaluate_cryoet",
    "load_deepfinder_domains",
    "load_density_inputs",
    "mc_dropout_subtomograms",
    "network_to_subtomo",
    "object_map",
    "paired_datalist",
    "shape_map",
    "simulate_baseline",
    "subtomo_to_network",
    "synthesize_subtomograms",
    "wgan_optimizer",
]

logger = logging.getLogger(__name__)

#: z-scored subtomograms are divided by this before entering the tanh generators (about 0.3 % of voxels clip).
SUBTOMO_SCALE: float = 3.0


# ----------------------------------------------------------------------------------------------
# value ranges
# ----------------------------------------------------------------------------------------------
def density_to_network(m: np.ndarray) -> np.ndarray:
    """``[0, 1]`` shape map -> ``[-1, 1]`` generator input (float32, same shape)."""
    return (2.0 * np.asarray(m, dtype=np.float32) - 1.0).astype(np.float32)


def subtomo_to_network(z: np.ndarray) -> np.ndarray:
    """z-scored subtomogram -> ``clip(z / SUBTOMO_SCALE, -1, 1)`` (float32, same shape)."""
    return np.clip(np.asarray(z, dtype=np.float32) / SUBTOMO_SCALE, -1.0, 1.0).astype(np.float32)


def network_to_subtomo(y: np.ndarray | torch.Tensor) -> np.ndarray:
    """Generator output in ``(-1, 1)`` -> z units (``SUBTOMO_SCALE * y``), float32 numpy."""
    if isinstance(y, torch.Tensor):
        y = y.detach().float().cpu().numpy()
    return (SUBTOMO_SCALE * np.asarray(y, dtype=np.float32)).astype(np.float32)


# ----------------------------------------------------------------------------------------------
# domain D: shape maps
# ----------------------------------------------------------------------------------------------
def shape_map(volume: np.ndarray, iso: float = 0.3, sigma: float = 1.0) -> np.ndarray:
    """Noise-free shape map in ``[0, 1]``: binarise at ``iso * max`` and smooth with a Gaussian.

    The same rule turns a binary object label (``iso`` anywhere in ``(0, 1)``) and a density map from
    :func:`~emgan_monai.physics.cryoet.density_from_pdb` or an MRC template (its molecular envelope at
    ``iso`` of its maximum) into the D-domain maps the generators were trained on.

    Parameters
    ----------
    volume
        ``(D, H, W)`` non-negative density or binary mask.
    iso
        Threshold as a fraction of the maximum, in ``(0, 1)``.
    sigma
        Standard deviation of the Gaussian smoothing in voxels (0 = none).

    Returns
    -------
    np.ndarray
        ``(D, H, W)`` float32 in ``[0, 1]`` (all zeros for an empty input).
    """
    if not 0.0 < iso < 1.0:
        raise ValueError(f"iso must be in (0, 1), got {iso}")
    volume = np.asarray(volume, dtype=np.float32)
    if volume.ndim != 3:
        raise ValueError(f"shape_map expects a (D, H, W) volume, got shape {volume.shape}")
    vmax = float(volume.max())
    if vmax <= 0:
        return np.zeros_like(volume)
    mask = (volume >= iso * vmax).astype(np.float32)
    if sigma > 0:
        mask = ndimage.gaussian_filter(mask, sigma, mode="constant")
    return np.clip(mask / max(float(mask.max()), 1e-12), 0.0, 1.0).astype(np.float32)


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


# ----------------------------------------------------------------------------------------------
# building the two domains from the DeepFinder toy layout
# ----------------------------------------------------------------------------------------------
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
    (:func:`skimage.measure.block_reduce`) to ``box``; the object mask becomes a partial-volume occupancy map
    that :func:`shape_map` binarises at one half.

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
            mask = _bin(object_map(tgt, label))
            subs.append(_bin(sub))
            masks.append((mask >= 0.5).astype(np.float32))
            dens.append(shape_map(mask, iso=0.5, sigma=sigma))
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


def wgan_optimizer(
    params: Iterable[torch.nn.Parameter] | Iterable[Iterable[torch.nn.Parameter]],
    gradient_penalty: bool,
    lr_rmsprop: float = 5e-4,
    lr_adam: float = 1e-4,
    betas: Sequence[float] = (0.5, 0.9),
) -> torch.optim.Optimizer:
    """RMSprop (weight-clipping WGAN, the paper's default) or Adam (WGAN-GP, Gulrajani et al.).

    ``params`` may be a list of parameter iterables (e.g. of two generators); they are chained.
    """
    params = list(params)
    if params and not isinstance(params[0], torch.Tensor):
        params = list(itertools.chain.from_iterable(params))
    if gradient_penalty:
        return torch.optim.Adam(params, lr=lr_adam, betas=tuple(betas))  # type: ignore[arg-type]
    return torch.optim.RMSprop(params, lr=lr_rmsprop)


# ----------------------------------------------------------------------------------------------
# inference: density maps -> subtomograms
# ----------------------------------------------------------------------------------------------
def load_density_inputs(
    input_dir: str | Path, voxel_size: float = 10.0, box: int = 32, iso: float = 0.3, sigma: float = 1.0
) -> list[tuple[str, np.ndarray]]:
    """Read every density map (MRC) / atomic model (PDB) of a folder as a D-domain shape map.

    Returns ``[(name, (box, box, box) float32 shape map in [0, 1]), ...]`` sorted by name
    (see :func:`~emgan_monai.data.cryoet.load_density` and :func:`shape_map`).
    """
    return [(item["label"], density_input(item["image"], voxel_size, box, iso, sigma))
            for item in density_datalist(input_dir, DENSITY_SUFFIXES)]


def density_input(
    path: str | Path, voxel_size: float = 10.0, box: int = 32, iso: float = 0.3, sigma: float = 1.0
) -> np.ndarray:
    """One density map (MRC) / atomic model (PDB) as the D-domain shape map the generator was trained on:
    resampled to ``voxel_size``, centre-padded/cropped to ``box``, then :func:`shape_map`. ``(box,)*3`` float32
    in ``[0, 1]`` (feed it through :func:`density_to_network`)."""
    return shape_map(load_density(path, voxel_size=voxel_size, box=box), iso=iso, sigma=sigma)


def _central_slices(volume: np.ndarray, lo: float, hi: float) -> list[np.ndarray]:
    """Central ``(H, W)`` slice across axis 0 and ``(D, W)`` slice across axis 1, as uint8 tiles."""
    c0, c1 = volume.shape[0] // 2, volume.shape[1] // 2
    return [to_uint8(volume[c0], lo, hi), to_uint8(volume[:, c1], lo, hi)]


def _write(path: Path, array: np.ndarray, voxel_size: float | None, overwrite: bool) -> str:
    write_image(path, array, voxel_size=voxel_size, overwrite=overwrite)
    return path.name


class _InfererModule(nn.Module):
    """``x -> inferer(x, network)`` as a module (so :func:`mc_dropout` finds the network's dropout layers)."""

    def __init__(self, network: nn.Module, inferer: Any | None) -> None:
        super().__init__()
        self.network = network
        self.inferer = inferer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(x) if self.inferer is None else self.inferer(x, self.network)


@torch.no_grad()
def synthesize_subtomograms(
    generator: nn.Module,
    input_dir: str | Path,
    output_dir: str | Path,
    n_samples: int = 8,
    voxel_size: float = 10.0,
    box: int = 32,
    iso: float = 0.3,
    sigma: float = 1.0,
    inferer: Any | None = None,
    seed: int = 0,
    device: str | torch.device = "cpu",
    overwrite: bool = False,
) -> dict[str, Any]:
    """Generate ``n_samples`` subtomograms per density map with the D -> S generator.

    Each sample draws new bottleneck noise (noise injection); dropout is off (``eval`` mode). Writes, per map
    ``name``: ``name_input.mrc`` (the shape map fed to the generator), ``name_sample_XX.mrc`` (z units, voxel size
    in the header); plus ``montage.png`` (one row per map: input, then the samples; for each the central slice
    across axis 0 and across axis 1 -- the latter shows the missing wedge) and ``synthesis.json``.

    Parameters
    ----------
    generator
        ``(B, 1, D, H, W) -> (B, 1, D, H, W)`` network in ``(-1, 1)``.
    input_dir
        Folder with ``.mrc``/``.map``/``.pdb`` files.
    n_samples
        Subtomograms per map.
    inferer
        ``monai.inferers`` inferer (e.g. ``SlidingWindowInferer`` so any map size works) or ``None``.
    overwrite
        Existing files raise ``FileExistsError`` unless ``True``.

    Returns
    -------
    dict
        The summary written to ``synthesis.json`` (files, shapes, voxel size).
    """
    if n_samples < 1:
        raise ValueError(f"n_samples must be >= 1, got {n_samples}")
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    inputs = load_density_inputs(input_dir, voxel_size, box, iso, sigma)
    model = _InfererModule(generator, inferer).to(device).eval()
    torch.manual_seed(seed)
    rows, files = [], []
    for name, m in inputs:
        x = torch.from_numpy(density_to_network(m))[None, None].to(device)
        entry = {"map": name, "input": _write(out / f"{name}_input.mrc", m, voxel_size, overwrite), "samples": []}
        tiles = _central_slices(m, 0.0, 1.0)
        for j in range(n_samples):
            sample = network_to_subtomo(model(x))[0, 0]
            entry["samples"].append(_write(out / f"{name}_sample_{j:02d}.mrc", sample, voxel_size, overwrite))
            tiles += _central_slices(sample, -SUBTOMO_SCALE, SUBTOMO_SCALE)
        rows.append(tiles)
        files.append(entry)
    ncols = len(rows[0])
    png = montage([t for row in rows for t in row], ncols=ncols, pad=2)
    _write(out / "montage.png", png, None, overwrite)
    summary = {
        "generator": "D -> S (density map -> subtomogram)",
        "n_maps": len(inputs),
        "n_samples": n_samples,
        "box": box,
        "voxel_size_A": voxel_size,
        "value_units": "z-score of the training subtomograms (dark = dense)",
        "montage": "rows: maps; columns: input, then samples; each as (central slice across axis 0, across axis 1)",
        "files": files,
    }
    path = out / "synthesis.json"
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True (--overwrite true) to replace it")
    path.write_text(json.dumps(summary, indent=2))
    logger.info("wrote %d x %d subtomograms to %s", len(inputs), n_samples, out)
    return summary


@torch.no_grad()
def mc_dropout_subtomograms(
    generator: nn.Module,
    input_dir: str | Path,
    output_dir: str | Path,
    k: int = 20,
    voxel_size: float = 10.0,
    box: int = 32,
    iso: float = 0.3,
    sigma: float = 1.0,
    inferer: Any | None = None,
    fix_noise: bool = True,
    seed: int = 0,
    device: str | torch.device = "cpu",
    overwrite: bool = False,
) -> dict[str, Any]:
    """Monte-Carlo dropout uncertainty: mean and per-voxel standard deviation of ``k`` generator passes.

    Uses :func:`emgan_monai.networks.mc_dropout` (eval mode, dropout layers active). With ``fix_noise`` the
    generator's bottleneck noise is drawn once per map and reused, so the std map shows the dropout (model)
    uncertainty only; otherwise it also contains the noise-injection variability. Writes ``name_mean.mrc``,
    ``name_std.mrc`` (z units), ``uncertainty.png`` (rows: maps; columns: input, mean, std, central slices across
    axes 0 and 1; std scaled to the largest std of all maps) and ``uncertainty.json`` (mean std per map).
    """
    from emgan_monai.networks.cyclegan3d import mc_dropout

    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    inputs = load_density_inputs(input_dir, voxel_size, box, iso, sigma)
    generator = generator.to(device)
    model = _InfererModule(generator, inferer)
    noise_channels = int(getattr(generator, "noise_channels", 0))
    torch.manual_seed(seed)
    results, files = [], []
    for name, m in inputs:
        x = torch.from_numpy(density_to_network(m))[None, None].to(device)
        if fix_noise and noise_channels:
            if inferer is not None and tuple(x.shape[2:]) != (box,) * 3:
                raise ValueError("fix_noise needs maps of exactly the box size when an inferer tiles the input")
            noise = torch.randn((1, noise_channels, *[s // 4 for s in x.shape[2:]]), device=device)
            mean, std = mc_dropout(generator, x, k=k, noise=noise)
        else:
            mean, std = mc_dropout(model, x, k=k)
        mean_z, std_z = network_to_subtomo(mean)[0, 0], network_to_subtomo(std)[0, 0]
        files.append(
            {
                "map": name,
                "mean": _write(out / f"{name}_mean.mrc", mean_z, voxel_size, overwrite),
                "std": _write(out / f"{name}_std.mrc", std_z, voxel_size, overwrite),
                "mean_std": float(std_z.mean()),
                "max_std": float(std_z.max()),
            }
        )
        results.append((m, mean_z, std_z))
    std_hi = max(float(r[2].max()) for r in results) or 1.0
    tiles = []
    for m, mean_z, std_z in results:
        tiles += _central_slices(m, 0.0, 1.0)
        tiles += _central_slices(mean_z, -SUBTOMO_SCALE, SUBTOMO_SCALE)
        tiles += _central_slices(std_z, 0.0, std_hi)
    _write(out / "uncertainty.png", montage(tiles, ncols=6, pad=2), None, overwrite)
    summary = {"k": k, "fix_noise": fix_noise, "voxel_size_A": voxel_size, "std_display_max": std_hi, "files": files}
    path = out / "uncertainty.json"
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True (--overwrite true) to replace it")
    path.write_text(json.dumps(summary, indent=2))
    return summary


# ----------------------------------------------------------------------------------------------
# traditional baseline and evaluation
# ----------------------------------------------------------------------------------------------
def estimate_snr(subtomos: np.ndarray, masks: np.ndarray) -> float:
    """Median SNR of real subtomograms under the model ``s = a * mask + b + noise``.

    ``a, b`` are fitted by least squares per particle; SNR is ``var(a * mask) / var(residual)``, the variance ratio
    used by :func:`~emgan_monai.physics.cryoet.add_noise_snr`. Used to calibrate the traditional baseline.

    Parameters
    ----------
    subtomos, masks
        ``(N, B, B, B)`` subtomograms and their binary object masks.
    """
    snrs = []
    for s, m in zip(np.asarray(subtomos, np.float64), np.asarray(masks, np.float64)):
        if m.std() == 0:
            continue
        design = np.stack([m.ravel(), np.ones(m.size)], axis=1)
        (a, b), *_ = np.linalg.lstsq(design, s.ravel(), rcond=None)
        resid = s - (a * m + b)
        snrs.append((a * a * m.var()) / max(resid.var(), 1e-12))
    if not snrs:
        raise ValueError("estimate_snr: every mask is empty")
    return float(np.median(snrs))


def simulate_baseline(
    densities: np.ndarray, voxel_size: float, snr: float, seed: int = 0, **simulator_kwargs: Any
) -> np.ndarray:
    """Traditional simulation (:func:`~emgan_monai.physics.cryoet.simulate_subtomogram`) of every map, z-scored.

    Returns ``(N, B, B, B)`` float32, normalised with the simulated dataset's own z-score statistics.
    """
    rng = np.random.default_rng(seed)
    sims = np.stack(
        [simulate_subtomogram(d, voxel_size, snr=snr, rng=rng, **simulator_kwargs) for d in np.asarray(densities)]
    )
    return zscore(sims, ZScoreStats.fit(sims))


@torch.no_grad()
def _classify(classifier: nn.Module, volumes: np.ndarray, device: torch.device, batch: int = 16) -> tuple:
    classifier = classifier.to(device).eval()
    logits, feats = [], []
    for i in range(0, len(volumes), batch):
        x = torch.from_numpy(np.ascontiguousarray(volumes[i : i + batch], dtype=np.float32))[:, None].to(device)
        f = classifier.features(x)
        feats.append(f.cpu().numpy())
        logits.append(classifier.head(f).cpu().numpy())
    return np.concatenate(logits), np.concatenate(feats)


def _ssim(a: np.ndarray, b: np.ndarray, clip: float = SUBTOMO_SCALE) -> float:
    from monai.metrics import SSIMMetric

    metric = SSIMMetric(spatial_dims=3, data_range=2 * clip, win_size=7)
    ta = torch.from_numpy(np.clip(a, -clip, clip).astype(np.float32))[:, None]
    tb = torch.from_numpy(np.clip(b, -clip, clip).astype(np.float32))[:, None]
    return float(metric(ta, tb).mean())


def _confusion(true: np.ndarray, pred: np.ndarray, n: int) -> np.ndarray:
    cm = np.zeros((n, n), dtype=np.int64)
    np.add.at(cm, (true, pred), 1)
    return cm


@torch.no_grad()
def evaluate_cryoet(
    generator: nn.Module,
    classifier: nn.Module,
    dataset_dir: str | Path,
    output_dir: str | Path,
    train_tomos: Sequence[int] = (1, 2, 3, 4),
    test_tomos: Sequence[int] = (5, 6),
    box: int = 32,
    sigma: float = 1.0,
    binning: int = 1,
    n_samples: int = 2,
    voxel_size: float = 10.0,
    snr: float | None = None,
    simulator_kwargs: dict | None = None,
    prdc_k: int = 5,
    seed: int = 0,
    device: str | torch.device = "cpu",
    overwrite: bool = False,
) -> dict[str, Any]:
    """One table for the GAN and the traditional simulation baseline (plus real held-out data as reference).

    For every held-out particle (tomograms ``test_tomos``) its D map (known class and pose) is turned into
    ``n_samples`` subtomograms by the generator and into ``n_samples`` by :func:`simulate_baseline` (SNR calibrated
    on the training tomograms with :func:`estimate_snr` unless given). Per method:

    * ``accuracy`` and ``confusion_matrix`` (rows: true class 1..C, columns: predicted) of the classifier;
    * ``precision``, ``recall``, ``density``, ``coverage`` (Naeem et al., ``k = prdc_k``) and ``frechet_distance``
      of the classifier features against the real held-out subtomograms;
    * ``ssim``: 3D SSIM (window 7, z units clipped to +-3) between each generated volume and the real subtomogram of
      the same particle (same class and pose).

    Writes ``metrics.json``, ``metrics.md`` and ``examples.png`` (one row per class: map, real, GAN, baseline) to
    ``output_dir`` and returns the metrics dict.
    """
    from emgan_monai.metrics.distances import frechet_distance, prdc

    device = torch.device(device)
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name in ("metrics.json", "metrics.md", "examples.png"):
        if (out / name).exists() and not overwrite:
            raise FileExistsError(f"{out / name} exists; pass overwrite=True (--overwrite true) to replace it")
    test = load_deepfinder_domains(dataset_dir, test_tomos, box=box, sigma=sigma, binning=binning)
    if snr is None:
        train = load_deepfinder_domains(dataset_dir, train_tomos, box=box, sigma=sigma, binning=binning)
        snr = estimate_snr(train.subtomo, train.mask)
    n_classes = int(getattr(getattr(classifier, "head", None), "out_features", test.label.max()))
    true = test.label - 1
    real = zscore(test.subtomo, test.stats())
    real_logits, real_feats = _classify(classifier, real, device)

    torch.manual_seed(seed)
    generator = generator.to(device).eval()
    gan = []
    for _ in range(n_samples):
        for i in range(0, len(test), 8):
            x = torch.from_numpy(density_to_network(test.density[i : i + 8]))[:, None].to(device)
            gan.append(network_to_subtomo(generator(x))[:, 0])
    gan_vols = np.concatenate(gan)
    sim_vols = simulate_baseline(
        np.concatenate([test.density] * n_samples), voxel_size, snr, seed=seed, **(simulator_kwargs or {})
    )
    rep_true = np.concatenate([true] * n_samples)
    rep_real = np.concatenate([real] * n_samples)

    def row(vols: np.ndarray | None, labels: np.ndarray, logits: np.ndarray, feats: np.ndarray) -> dict[str, Any]:
        pred = logits.argmax(1)
        r: dict[str, Any] = {
            "n": int(len(labels)),
            "accuracy": float((pred == labels).mean()),
            "confusion_matrix": _confusion(labels, pred, n_classes).tolist(),
        }
        if vols is not None:
            r.update(prdc(real_feats, feats, k=prdc_k))
            r["frechet_distance"] = frechet_distance(real_feats, feats)
            r["ssim"] = _ssim(vols, rep_real)
        return r

    rows = {"real_heldout": row(None, true, real_logits, real_feats)}
    for name, vols in (("gan", gan_vols), ("traditional_simulation", sim_vols)):
        logits, feats = _classify(classifier, vols, device)
        rows[name] = row(vols, rep_true, logits, feats)
    metrics = {
        "setting": {
            "test_tomograms": list(test_tomos),
            "n_test_particles": len(test),
            "n_samples_per_map": n_samples,
            "box": box,
            "binning": binning,
            "voxel_size_A": voxel_size,
            "baseline_snr": snr,
            "baseline_simulator": {"tilt_range": [-60, 60], "defocus_um": 3.0, "voltage_kv": 300.0, "cs_mm": 2.7,
                                   "amplitude_contrast": 0.07, **(simulator_kwargs or {})},
            "prdc_k": prdc_k,
            "seed": seed,
        },
        **rows,
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    (out / "metrics.md").write_text(metrics_markdown(metrics))
    _examples_png(out / "examples.png", test, real, gan_vols[: len(test)], sim_vols[: len(test)], overwrite)
    return metrics


def metrics_markdown(metrics: dict[str, Any]) -> str:
    """Markdown table (and confusion matrices) of :func:`evaluate_cryoet`'s result."""
    lines = [
        "| method | n | classifier accuracy | precision | recall | density | coverage | Frechet distance | SSIM |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    names = {"real_heldout": "real held-out subtomograms (reference)", "gan": "CryoETGAN (D -> S generator)",
             "traditional_simulation": "traditional simulation (CTF + wedge + noise)"}
    for key in ("gan", "traditional_simulation", "real_heldout"):
        r = metrics[key]
        cells = [f"{r[m]:.3f}" if m in r else "--" for m in
                 ("precision", "recall", "density", "coverage", "frechet_distance", "ssim")]
        lines.append(f"| {names[key]} | {r['n']} | {100 * r['accuracy']:.1f} % | " + " | ".join(cells) + " |")
    for key in ("gan", "traditional_simulation", "real_heldout"):
        cm = np.asarray(metrics[key]["confusion_matrix"])
        lines += ["", f"Confusion matrix, {names[key]} (rows: true class, columns: predicted class):", "",
                  "| true \\ pred | " + " | ".join(str(i + 1) for i in range(cm.shape[1])) + " |",
                  "|---" * (cm.shape[1] + 1) + "|"]
        lines += [f"| {i + 1} | " + " | ".join(str(v) for v in r) + " |" for i, r in enumerate(cm)]
    return "\n".join(lines) + "\n"


def _examples_png(path: Path, test: CryoETDomains, real: np.ndarray, gan: np.ndarray, sim: np.ndarray,
                  overwrite: bool) -> None:
    tiles = []
    for k in np.unique(test.label):
        i = int(np.flatnonzero(test.label == k)[0])
        tiles += _central_slices(test.density[i], 0.0, 1.0)
        for v in (real[i], gan[i], sim[i]):
            tiles += _central_slices(v, -SUBTOMO_SCALE, SUBTOMO_SCALE)
    _write(path, montage(tiles, ncols=8, pad=2), None, overwrite)
