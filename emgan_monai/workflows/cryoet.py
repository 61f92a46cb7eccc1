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
from emgan_monai.data.batch import failure_reason, report_failure_list
from emgan_monai.io import write_image
from emgan_monai.physics.cryoet import pad_or_crop, simulate_subtomogram
from emgan_monai.visualize import montage, to_uint8

__all__ = [
    "GAN_MODES",
    "SUBTOMO_SCALE",
    "calibrate_baseline",
    "calibrate_snr",
    "gan_optimizer",
    "gan_setting",
    "generate_subtomograms",
    "init_generator",
    "load_generators",
    "save_json",
    "simulator_settings",
    "CryoETDomains",
    "classifier_datalist",
    "cyclegan_datalist",
    "density_input",
    "density_to_network",
    "fit_to_box",
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


#: Adversarial settings by name: loss, Lipschitz control of the critic, optimiser and its defaults.
#: ``lsgan`` (default) and ``hinge``: spectrally normalised critics, no clipping, Adam(2e-4, betas 0.5/0.999);
#: ``wgan_gp``: Wasserstein + gradient penalty 10 (Gulrajani et al.), Adam(1e-4, betas 0.5/0.9), plain critic;
#: ``wgan_clip``: the paper's Wasserstein + weight clipping 0.01 on a plain critic (clipping spectrally normalised
#: weights bounds nothing), RMSprop at the WGAN paper's 5e-5.
GAN_MODES: dict[str, dict[str, Any]] = {
    "lsgan": {"adv_loss": "least_squares", "clip_value": None, "gp_weight": None, "spectral_norm": True,
              "optimizer": "adam", "lr": 2e-4, "betas": (0.5, 0.999)},
    "hinge": {"adv_loss": "hinge", "clip_value": None, "gp_weight": None, "spectral_norm": True,
              "optimizer": "adam", "lr": 2e-4, "betas": (0.5, 0.999)},
    "wgan_gp": {"adv_loss": "wasserstein", "clip_value": None, "gp_weight": 10.0, "spectral_norm": False,
                "optimizer": "adam", "lr": 1e-4, "betas": (0.5, 0.9)},
    "wgan_clip": {"adv_loss": "wasserstein", "clip_value": 0.01, "gp_weight": None, "spectral_norm": False,
                  "optimizer": "rmsprop", "lr": 5e-5, "betas": None},
}


def gan_setting(mode: str, key: str) -> Any:
    """One entry of :data:`GAN_MODES` (``adv_loss``, ``clip_value``, ``gp_weight``, ``spectral_norm``, ...)."""
    if mode not in GAN_MODES:
        raise ValueError(f"unknown gan_mode {mode!r}; expected one of {sorted(GAN_MODES)}")
    return GAN_MODES[mode][key]


def gan_optimizer(
    modules: nn.Module | Sequence[nn.Module | None],
    mode: str = "lsgan",
    lr: float | None = None,
    physics_lr: float | None = None,
) -> torch.optim.Optimizer:
    """Optimiser of one or several networks for a :data:`GAN_MODES` entry (``None`` entries are skipped).

    ``lr`` overrides the mode's learning rate. Networks with ``physics_parameters()``
    (:class:`~emgan_monai.networks.PhysicsInformedGenerator`) get those few parameters in their own group with
    ``physics_lr`` (default ``lr``): a handful of scalars (defocus, contrast, noise level) need larger steps than
    convolution weights.
    """
    gan_setting(mode, "lr")  # validates the name
    setting = GAN_MODES[mode]
    lr = float(setting["lr"] if lr is None else lr)
    mods = [modules] if isinstance(modules, nn.Module) else [m for m in modules if m is not None]
    base: list[nn.Parameter] = []
    phys: list[nn.Parameter] = []
    for m in mods:
        m = getattr(m, "module", m)  # DistributedDataParallel
        special = list(m.physics_parameters()) if hasattr(m, "physics_parameters") else []
        ids = {id(p) for p in special}
        phys += [p for p in special if p.requires_grad]
        base += [p for p in m.parameters() if id(p) not in ids and p.requires_grad]
    groups = [{"params": base}]
    if phys:
        groups.append({"params": phys, "lr": float(lr if physics_lr is None else physics_lr)})
    groups = [g for g in groups if g["params"]]
    if setting["optimizer"] == "rmsprop":
        return torch.optim.RMSprop(groups, lr=lr)
    return torch.optim.Adam(groups, lr=lr, betas=tuple(setting["betas"]))


def wgan_optimizer(
    params: Iterable[torch.nn.Parameter] | Iterable[Iterable[torch.nn.Parameter]],
    gradient_penalty: bool,
    lr_rmsprop: float = 5e-5,
    lr_adam: float = 1e-4,
    betas: Sequence[float] = (0.5, 0.9),
) -> torch.optim.Optimizer:
    """RMSprop at the WGAN paper's 5e-5 (weight clipping) or Adam (WGAN-GP, Gulrajani et al.); kept for scripts,
    the bundle uses :func:`gan_optimizer`. ``params`` may be a list of parameter iterables (they are chained)."""
    params = list(params)
    if params and not isinstance(params[0], torch.Tensor):
        params = list(itertools.chain.from_iterable(params))
    if gradient_penalty:
        return torch.optim.Adam(params, lr=lr_adam, betas=tuple(betas))  # type: ignore[arg-type]
    return torch.optim.RMSprop(params, lr=lr_rmsprop)


def init_generator(
    generator: nn.Module, train: CryoETDomains, voxel_size: float, seed: int = 0,
    simulator_kwargs: dict | None = None,
) -> dict[str, Any]:
    """Start a physics-informed generator at the fair baseline: :func:`calibrate_baseline` on the training data, then
    :meth:`~emgan_monai.networks.PhysicsInformedGenerator.calibrate_` with that SNR (z units of the real training
    subtomograms). Other generators are left unchanged. Returns the calibration (logged and saved by the caller)."""
    net = getattr(generator, "module", generator)
    if not hasattr(net, "calibrate_"):
        return {}
    cal = calibrate_baseline(train, voxel_size, seed=seed, simulator_kwargs=simulator_kwargs)
    maps = torch.from_numpy(density_to_network(train.density))[:, None]
    physics = net.calibrate_(maps, cal.snr)
    logger.info("physics-informed generator calibrated on the training data: snr %.4g, %s", cal.snr, physics)
    return {"snr": cal.snr, "snr_estimate_target": cal.target_snr_estimate, **physics}


def save_json(obj: Any, path: str | Path) -> str:
    """Write ``obj`` as indented JSON (folders created); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2))
    return str(path)


def load_generators(
    files: dict[str, Sequence[str]], generator_kwargs: dict[str, Any], device: str | torch.device = "cpu"
) -> dict[str, nn.Module]:
    """``{name: (kind, weights_path[, kwargs])}`` -> ``{name: generator}`` (eval mode) built with
    :func:`~emgan_monai.networks.build_subtomogram_generator` ``(kind, **generator_kwargs, **kwargs)``."""
    from emgan_monai.networks.physics_generator import build_subtomogram_generator

    out = {}
    for name, spec in files.items():
        kind, path, *extra = spec
        kw = {**generator_kwargs, **(extra[0] if extra else {})}
        if not Path(path).is_file():
            raise FileNotFoundError(f"generator {name!r}: weights {path} not found")
        net = build_subtomogram_generator(kind, **kw)
        net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        out[name] = net.to(device).eval()
    return out


# ----------------------------------------------------------------------------------------------
# inference: density maps -> subtomograms
# ----------------------------------------------------------------------------------------------
def load_density_inputs(
    input_dir: str | Path, voxel_size: float = 10.0, box: int = 32, iso: float = 0.3, sigma: float = 1.0,
    allow_larger: bool = False,
) -> list[tuple[str, np.ndarray]]:
    """Read every density map (MRC) / atomic model (PDB, mmCIF) of a folder as a D-domain shape map.

    Returns ``[(name, shape map in [0, 1]), ...]`` sorted by name (see :func:`density_input`).
    """
    return [(item["label"], density_input(item["image"], voxel_size, box, iso, sigma, allow_larger))
            for item in density_datalist(input_dir, DENSITY_SUFFIXES)]


def density_input(
    path: str | Path, voxel_size: float = 10.0, box: int = 32, iso: float = 0.3, sigma: float = 1.0,
    allow_larger: bool = False,
) -> np.ndarray:
    """One density map (MRC) / atomic model (PDB, mmCIF) as the D-domain shape map the generator was trained on.

    The map is resampled to ``voxel_size`` (anti-aliased), turned into a shape map (:func:`shape_map`) and fitted to
    the box by :func:`fit_to_box`: a molecule that fits is centred in a ``(box,)*3`` volume; a larger one is refused
    with a clear error, or (``allow_larger``) returned whole, padded to a multiple of 4, for tiled (sliding-window)
    inference. Never cropped in silence. float32 in ``[0, 1]`` (feed it through :func:`density_to_network`).
    """
    return fit_to_box(shape_map(load_density(path, voxel_size=voxel_size, box=None), iso=iso, sigma=sigma), box,
                      allow_larger=allow_larger, name=str(path), voxel_size=voxel_size)


def fit_to_box(
    m: np.ndarray, box: int, allow_larger: bool = False, name: str = "", voxel_size: float | None = None,
    multiple: int = 4,
) -> np.ndarray:
    """Fit a ``(D, H, W)`` shape map to the generator's box without cutting the molecule.

    The molecule is the region where ``m >= 0.5``. If it fits in ``box`` the output is the ``(box,)*3`` window
    centred on it (padding with zeros where the map is smaller); only empty margin is dropped. Otherwise, with
    ``allow_larger``, the whole map zero-padded to at least ``box`` and to a multiple of ``multiple`` per axis (for
    a sliding-window inferer); without it a :class:`~emgan_monai.errors.DataError` explains the options.
    """
    from emgan_monai.errors import DataError

    m = np.asarray(m, dtype=np.float32)
    support = np.argwhere(m >= 0.5)
    if support.size == 0:
        return pad_or_crop(m, box)
    lo, hi = support.min(0), support.max(0) + 1
    extent = hi - lo
    if np.all(extent <= box):
        centre = (lo + hi) // 2
        start = centre - box // 2
        out = np.zeros((box,) * 3, dtype=np.float32)
        src_lo = np.maximum(start, 0)
        src_hi = np.minimum(start + box, m.shape)
        dst_lo = src_lo - start
        dst_hi = dst_lo + (src_hi - src_lo)
        out[tuple(slice(a, b) for a, b in zip(dst_lo, dst_hi))] = m[tuple(slice(a, b) for a, b in zip(src_lo, src_hi))]
        return out
    if not allow_larger:
        vs = f" at {voxel_size} A/voxel" if voxel_size else ""
        raise DataError(
            name, f"the molecule spans {tuple(int(e) for e in extent)} voxels{vs}, more than the generator's box "
            f"{box}: it would be cut. Tile it with the sliding-window inferer (inference.json: --tile_large_maps true, "
            "the default) or choose a larger voxel size"
        )
    shape = [max(box, int(np.ceil(n / multiple)) * multiple) for n in m.shape]
    return pad_or_crop(m, shape)


def _central_slices(volume: np.ndarray, lo: float, hi: float) -> list[np.ndarray]:
    """Central ``(H, W)`` slice across axis 0 and ``(D, W)`` slice across axis 1, as uint8 tiles."""
    c0, c1 = volume.shape[0] // 2, volume.shape[1] // 2
    return [to_uint8(volume[c0], lo, hi), to_uint8(volume[:, c1], lo, hi)]


def _montage(tiles: list[np.ndarray], ncols: int) -> np.ndarray:
    """:func:`~emgan_monai.visualize.montage` of tiles padded (white) to a common size (maps may differ in size)."""
    h = max(t.shape[0] for t in tiles)
    w = max(t.shape[1] for t in tiles)
    padded = [np.pad(t, [(0, h - t.shape[0]), (0, w - t.shape[1])] + [(0, 0)] * (t.ndim - 2), constant_values=255)
              for t in tiles]
    return montage(padded, ncols=ncols, pad=2)


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
    tile_large_maps: bool = False,
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
    tile_large_maps
        Maps whose molecule exceeds ``box`` are generated whole through ``inferer`` (tiles of the box size) instead
        of being refused (see :func:`fit_to_box`); needs a sliding-window ``inferer`` for fixed-size generators.

    Returns
    -------
    dict
        The summary written to ``synthesis.json`` (files, shapes, voxel size).
    """
    if n_samples < 1:
        raise ValueError(f"n_samples must be >= 1, got {n_samples}")
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    inputs, failures = [], []
    items = density_datalist(input_dir, DENSITY_SUFFIXES)
    for item in items:  # every readable map is processed; the others are listed at the end (exit status 1)
        try:
            inputs.append((item["label"], density_input(item["image"], voxel_size, box, iso, sigma, tile_large_maps)))
        except (OSError, ValueError, RuntimeError) as err:
            failures.append((str(item["image"]), failure_reason(err)))
            logger.warning("skipping %s: %s", item["image"], failures[-1][1])
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
    if rows:
        png = _montage([t for row in rows for t in row], ncols=len(rows[0]))
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
        "failed": [{"file": f, "reason": r} for f, r in failures],
    }
    path = out / "synthesis.json"
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True (--overwrite true) to replace it")
    path.write_text(json.dumps(summary, indent=2))
    logger.info("wrote %d x %d subtomograms to %s", len(inputs), n_samples, out)
    report_failure_list(failures, len(items))
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
    tile_large_maps: bool = False,
) -> dict[str, Any]:
    """Monte-Carlo dropout uncertainty: mean and per-voxel standard deviation of ``k`` generator passes.

    Uses :func:`emgan_monai.networks.mc_dropout` (eval mode, dropout layers active). With ``fix_noise`` the
    generator's noise (every tensor of ``sample_noise``) is drawn once per map and reused, so the std map shows the
    dropout (model) uncertainty only; otherwise it also contains the noise-injection variability. A generator without
    dropout layers (the physics-informed one without residual) gives the spread of its ``k`` stochastic samples
    instead (``std_source`` in ``uncertainty.json``). Writes ``name_mean.mrc``,
    ``name_std.mrc`` (z units), ``uncertainty.png`` (rows: maps; columns: input, mean, std, central slices across
    axes 0 and 1; std scaled to the largest std of all maps) and ``uncertainty.json`` (mean std per map).
    """
    from emgan_monai.networks.cyclegan3d import mc_dropout

    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    inputs = load_density_inputs(input_dir, voxel_size, box, iso, sigma, allow_larger=tile_large_maps)
    generator = generator.to(device)
    model = _InfererModule(generator, inferer)
    has_dropout = any(isinstance(m, nn.modules.dropout._DropoutNd) for m in generator.modules())
    torch.manual_seed(seed)
    results, files = [], []
    for name, m in inputs:
        x = torch.from_numpy(density_to_network(m))[None, None].to(device)
        if fix_noise and has_dropout and hasattr(generator, "sample_noise"):
            if inferer is not None and tuple(x.shape[2:]) != (box,) * 3:
                raise ValueError("fix_noise needs maps of exactly the box size when an inferer tiles the input")
            mean, std = mc_dropout(generator, x, k=k, noise=generator.sample_noise(x))
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
    _write(out / "uncertainty.png", _montage(tiles, ncols=6), None, overwrite)
    summary = {"k": k, "fix_noise": fix_noise and has_dropout, "voxel_size_A": voxel_size, "std_display_max": std_hi,
               "std_source": "mc_dropout" + (" (noise fixed)" if fix_noise else " + generator noise") if has_dropout
               else "generator_noise (the generator has no dropout layers)", "files": files}
    path = out / "uncertainty.json"
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True (--overwrite true) to replace it")
    path.write_text(json.dumps(summary, indent=2))
    return summary


# ----------------------------------------------------------------------------------------------
# traditional baseline and evaluation
# ----------------------------------------------------------------------------------------------
def estimate_snr(subtomos: np.ndarray, masks: np.ndarray) -> float:
    """Median SNR of subtomograms under the model ``s = a * mask + b + noise``.

    ``a, b`` are fitted by least squares per particle; SNR is ``var(a * mask) / var(residual)``. This is *not* the
    SNR parameter of :func:`~emgan_monai.physics.cryoet.add_noise_snr` (``var(CTF-filtered map) / var(noise)``):
    a simulation at nominal SNR ``x`` reads about ``x / 2`` here. :func:`calibrate_snr` therefore searches the
    simulator SNR whose simulations this estimator reads like the real data.

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


def _simulate(densities: np.ndarray, voxel_size: float, snr: float, seed: int, simulator_kwargs: dict) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.stack([simulate_subtomogram(d, voxel_size, snr=snr, rng=rng, **simulator_kwargs)
                     for d in np.asarray(densities)]).astype(np.float32)


def calibrate_snr(
    densities: np.ndarray,
    masks: np.ndarray,
    target: float,
    voxel_size: float,
    seed: int = 0,
    simulator_kwargs: dict | None = None,
    bounds: tuple[float, float] = (1e-4, 1e2),
    iterations: int = 30,
    strict: bool = False,
) -> float:
    """Simulator SNR whose simulations of ``densities`` read ``target`` with :func:`estimate_snr` on ``masks``.

    Bisection in ``log(snr)`` with the same noise realisation at every step (common random numbers make the
    estimate monotone in the SNR). Use it with the real training subtomograms' estimate as ``target``: the baseline
    then has the real data's SNR *as the evaluation measures it*. A target outside what ``bounds`` can give raises
    ``ValueError`` with ``strict``, else logs a warning and returns the nearer bound.
    """
    kwargs = dict(simulator_kwargs or {})
    lo, hi = np.log(bounds[0]), np.log(bounds[1])

    def measured(log_snr: float) -> float:
        return estimate_snr(_simulate(densities, voxel_size, float(np.exp(log_snr)), seed, kwargs), masks)

    if not measured(lo) <= target <= measured(hi):
        if not strict:
            edge = bounds[1] if target > measured(hi) else bounds[0]
            logger.warning("calibrate_snr: estimate %.4g cannot be reached with simulator SNRs in %s (the simulated "
                           "signal correlates too little with the masks); using %.4g", target, bounds, edge)
            return float(edge)
        raise ValueError(f"target SNR estimate {target} cannot be reached with simulator SNRs in {bounds}")
    for _ in range(iterations):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if measured(mid) < target else (lo, mid)
    return float(np.exp(0.5 * (lo + hi)))


def simulator_settings(simulator_kwargs: dict | None = None) -> dict[str, Any]:
    """The settings :func:`~emgan_monai.physics.cryoet.simulate_subtomogram` runs with: its defaults updated by
    ``simulator_kwargs`` (recorded in the metrics, so the record is what ran)."""
    import inspect

    defaults = {k: v.default for k, v in inspect.signature(simulate_subtomogram).parameters.items()
                if v.default is not inspect.Parameter.empty and k not in ("snr", "rng")}
    unknown = set(simulator_kwargs or {}) - set(defaults)
    if unknown:
        raise ValueError(f"unknown simulator settings {sorted(unknown)}; expected some of {sorted(defaults)}")
    out = {**defaults, **(simulator_kwargs or {})}
    return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}


@dataclass
class BaselineCalibration:
    """A traditional simulator calibrated on real training data.

    Attributes
    ----------
    snr
        Simulator SNR (:func:`calibrate_snr`).
    target_snr_estimate
        :func:`estimate_snr` of the real training subtomograms.
    stats
        z-score statistics of the simulated *training* set (applied to every later simulation, so simulated sets
        are in the same units as the real data: z units of the real training set).
    simulator
        Every simulator setting (:func:`simulator_settings`).
    """

    snr: float
    target_snr_estimate: float
    stats: ZScoreStats
    simulator: dict[str, Any]

    def simulate(self, densities: np.ndarray, voxel_size: float, seed: int = 0) -> np.ndarray:
        """``(N, B, B, B)`` maps -> simulated subtomograms in z units (float32)."""
        kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in self.simulator.items()}
        return zscore(_simulate(densities, voxel_size, self.snr, seed, kwargs), self.stats)


def calibrate_baseline(
    train: CryoETDomains, voxel_size: float, seed: int = 0, simulator_kwargs: dict | None = None,
    snr: float | None = None,
) -> BaselineCalibration:
    """Fair traditional baseline: SNR calibrated on the real training subtomograms with the estimator that measures
    it (:func:`calibrate_snr`, unless ``snr`` is given), units fixed by the simulated training set."""
    settings = simulator_settings(simulator_kwargs)
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in settings.items()}
    target = estimate_snr(train.subtomo, train.mask)
    if snr is None:
        snr = calibrate_snr(train.density, train.mask, target, voxel_size, seed=seed + 1, simulator_kwargs=kwargs)
    sims = _simulate(train.density, voxel_size, snr, seed + 2, kwargs)
    return BaselineCalibration(float(snr), float(target), ZScoreStats.fit(sims), settings)


def simulate_baseline(
    densities: np.ndarray, voxel_size: float, snr: float, seed: int = 0, stats: ZScoreStats | None = None,
    **simulator_kwargs: Any,
) -> np.ndarray:
    """Traditional simulation (:func:`~emgan_monai.physics.cryoet.simulate_subtomogram`) of every map, z-scored
    with ``stats`` (e.g. :attr:`BaselineCalibration.stats`; ``None``: the simulated set's own statistics).

    Returns ``(N, B, B, B)`` float32.
    """
    sims = _simulate(densities, voxel_size, snr, seed, simulator_kwargs)
    return zscore(sims, ZScoreStats.fit(sims) if stats is None else stats)


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
def generate_subtomograms(
    generator: nn.Module, densities: np.ndarray, n_samples: int, seed: int = 0,
    device: str | torch.device = "cpu", batch: int = 8,
) -> np.ndarray:
    """``n_samples`` generator outputs per ``(N, B, B, B)`` map, in z units: ``(n_samples * N, B, B, B)``, sample
    ``j`` of map ``i`` at ``j * N + i``. Eval mode (dropout off); noise from ``torch.manual_seed(seed)``."""
    torch.manual_seed(seed)
    generator = generator.to(device).eval()
    out = []
    for _ in range(n_samples):
        for i in range(0, len(densities), batch):
            x = torch.from_numpy(density_to_network(densities[i : i + batch]))[:, None].to(device)
            out.append(network_to_subtomo(generator(x))[:, 0])
    return np.concatenate(out)


def _accuracy_se(correct: np.ndarray, n_maps: int) -> dict[str, float]:
    """Accuracy, its binomial standard error ``sqrt(p (1 - p) / n)``, and the standard error across maps (samples
    of one map are not independent: the per-map accuracies are)."""
    p = float(correct.mean())
    n = correct.size
    per_map = correct.reshape(-1, n_maps).mean(0) if n % n_maps == 0 else correct
    return {"accuracy": p, "accuracy_se": float(np.sqrt(p * (1 - p) / n)),
            "accuracy_se_by_map": float(per_map.std(ddof=1) / np.sqrt(per_map.size)) if per_map.size > 1 else 0.0}


@torch.no_grad()
def evaluate_cryoet(
    generators: nn.Module | dict[str, nn.Module],
    classifier: nn.Module,
    dataset_dir: str | Path,
    output_dir: str | Path,
    train_tomos: Sequence[int] = (1, 2, 3, 4),
    test_tomos: Sequence[int] = (5, 6),
    box: int = 32,
    sigma: float = 1.0,
    binning: int = 1,
    n_samples: int = 8,
    voxel_size: float = 10.0,
    snr: float | None = None,
    simulator_kwargs: dict | None = None,
    wedge_noise_baseline: bool = True,
    prdc_k: int = 5,
    seed: int = 0,
    device: str | torch.device = "cpu",
    overwrite: bool = False,
) -> dict[str, Any]:
    """One table for the generators, the fair traditional simulation and real data, on held-out tomograms.

    **One normalisation**: every set is in z units of the *real training* subtomograms: real held-out (and real
    training) subtomograms are z-scored with the real training statistics; generator outputs are produced in those
    units; the baseline is z-scored with the statistics of its simulation of the *training* maps
    (:func:`calibrate_baseline`). No set is normalised with its own statistics.

    **Fair baseline**: :func:`calibrate_baseline` (simulator SNR calibrated so that :func:`estimate_snr` reads the
    real training subtomograms' value). With ``wedge_noise_baseline`` a second baseline row passes the noise through
    the missing wedge as well (``noise_in_wedge=True``, closer to noise reconstructed from a tilt series), calibrated
    the same way.

    For every held-out particle (its D map has a known class and pose) each generator and baseline makes
    ``n_samples`` subtomograms (>= 8 recommended). Per row:

    * ``accuracy`` with ``accuracy_se`` (binomial) and ``accuracy_se_by_map`` (across maps), ``confusion_matrix``
      (rows: true class 1..C, columns: predicted), ``classes_predicted`` (distinct predicted classes);
    * ``precision``, ``recall``, ``density``, ``coverage`` (Naeem et al., ``k = prdc_k``), ``frechet_distance``
      of classifier features against the real held-out subtomograms;
    * ``std`` (z units) and ``std_ratio`` to the real held-out std; ``ssim`` with the real subtomogram of the
      same particle.

    ``criteria`` checks the issue's targets for every generator against the strongest baseline. Writes
    ``metrics.json``, ``metrics.md`` and ``examples.png`` to ``output_dir`` and returns the metrics dict.
    """
    from emgan_monai.metrics.distances import frechet_distance, prdc

    if n_samples < 1:
        raise ValueError(f"n_samples must be >= 1, got {n_samples}")
    if isinstance(generators, nn.Module):
        generators = {"gan": generators}
    device = torch.device(device)
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name in ("metrics.json", "metrics.md", "examples.png"):
        if (out / name).exists() and not overwrite:
            raise FileExistsError(f"{out / name} exists; pass overwrite=True (--overwrite true) to replace it")
    train = load_deepfinder_domains(dataset_dir, train_tomos, box=box, sigma=sigma, binning=binning)
    test = load_deepfinder_domains(dataset_dir, test_tomos, box=box, sigma=sigma, binning=binning)
    stats = train.stats()
    n_classes = int(getattr(getattr(classifier, "head", None), "out_features", test.label.max()))
    true = test.label - 1
    real = zscore(test.subtomo, stats)
    real_train = zscore(train.subtomo, stats)
    real_logits, real_feats = _classify(classifier, real, device)
    real_std = float(real.std())

    rep_true = np.concatenate([true] * n_samples)
    rep_real = np.concatenate([real] * n_samples)
    maps = np.concatenate([test.density] * n_samples)

    def row(vols: np.ndarray, labels: np.ndarray, logits: np.ndarray, feats: np.ndarray, n_maps: int,
            paired: np.ndarray | None) -> dict[str, Any]:
        pred = logits.argmax(1)
        correct = pred == labels
        r: dict[str, Any] = {"n": int(len(labels)), **_accuracy_se(correct, n_maps),
                             "classes_predicted": int(np.unique(pred).size),
                             "confusion_matrix": _confusion(labels, pred, n_classes).tolist(),
                             "std": float(vols.std()), "std_ratio": float(vols.std() / real_std),
                             "mean": float(vols.mean())}
        if feats is not real_feats:
            r.update(prdc(real_feats, feats, k=prdc_k))
            r["frechet_distance"] = float(frechet_distance(real_feats, feats))
        if paired is not None:
            r["ssim"] = _ssim(vols, paired)
            r["per_map_accuracy"] = [round(float(v), 4) for v in correct.reshape(-1, n_maps).mean(0)]
        return r

    rows: dict[str, Any] = {"real_heldout": row(real, true, real_logits, real_feats, len(test), None)}
    tl, tf = _classify(classifier, real_train, device)
    rows["real_train"] = row(real_train, train.label - 1, tl, tf, len(train), None)
    baselines = {"traditional_simulation": dict(simulator_kwargs or {})}
    if wedge_noise_baseline:
        baselines["traditional_simulation_wedge_noise"] = {**(simulator_kwargs or {}), "noise_in_wedge": True}
    calibrations, volumes = {}, {}
    for name, kwargs in baselines.items():
        cal = calibrate_baseline(train, voxel_size, seed=seed, simulator_kwargs=kwargs,
                                 snr=snr if name == "traditional_simulation" else None)
        calibrations[name] = cal
        volumes[name] = cal.simulate(maps, voxel_size, seed=seed)
    for name, gen in generators.items():
        volumes[name] = generate_subtomograms(gen, maps[: len(test)], n_samples, seed=seed, device=device)
    for name, vols in volumes.items():
        logits, feats = _classify(classifier, vols, device)
        rows[name] = row(vols, rep_true, logits, feats, len(test), rep_real)

    metrics: dict[str, Any] = {
        "setting": {
            "train_tomograms": list(train_tomos),
            "test_tomograms": list(test_tomos),
            "n_test_particles": len(test),
            "n_samples_per_map": n_samples,
            "box": box,
            "binning": binning,
            "voxel_size_A": voxel_size,
            "normalisation": "z units of the real training subtomograms (mean %.6g, std %.6g) for every set"
                             % (stats.mean, stats.std),
            "baselines": {name: {"snr": cal.snr, "snr_estimate_target": cal.target_snr_estimate,
                                 "simulator": cal.simulator, "zscore_of_simulated_training_set":
                                 {"mean": cal.stats.mean, "std": cal.stats.std}}
                          for name, cal in calibrations.items()},
            "baseline_snr": calibrations["traditional_simulation"].snr,
            "generators": {name: _describe_generator(g) for name, g in generators.items()},
            "prdc_k": prdc_k,
            "seed": seed,
        },
        **rows,
    }
    metrics["criteria"] = {name: _criteria(rows, name, list(baselines)) for name in generators}
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    (out / "metrics.md").write_text(metrics_markdown(metrics))
    _examples_png(out / "examples.png", test, real, {k: v[: len(test)] for k, v in volumes.items()}, overwrite)
    return metrics


def _describe_generator(g: nn.Module) -> dict[str, Any]:
    d: dict[str, Any] = {"class": type(g).__name__, "parameters": int(sum(p.numel() for p in g.parameters()))}
    if hasattr(g, "physics"):
        d["physics"] = g.physics()
    return d


def _criteria(rows: dict[str, Any], name: str, baselines: list[str]) -> dict[str, Any]:
    """The issue's 'done when' targets for generator ``name`` against the strongest baseline of each metric."""
    g, real = rows[name], rows["real_heldout"]
    best = max(baselines, key=lambda b: rows[b]["accuracy"])
    best_acc = rows[best]["accuracy"]
    diff = np.asarray(g["per_map_accuracy"]) - np.asarray(rows[best]["per_map_accuracy"])
    best_fd = min(rows[b]["frechet_distance"] for b in baselines)
    best_cov = max(rows[b]["coverage"] for b in baselines)
    checks = {
        "accuracy_at_least_best_baseline": g["accuracy"] >= best_acc,
        "accuracy_at_least_75pct_of_real": g["accuracy"] >= 0.75 * real["accuracy"],
        "frechet_below_best_baseline": g["frechet_distance"] < best_fd,
        "coverage_at_least_best_baseline": g["coverage"] >= best_cov,
        "at_least_8_of_9_classes": g["classes_predicted"] >= min(8, len(real["confusion_matrix"]) - 1),
        "std_within_20pct_of_real": abs(g["std_ratio"] - 1.0) <= 0.2,
    }
    return {**{k: bool(v) for k, v in checks.items()}, "all": bool(all(checks.values())),
            "best_baseline_by_accuracy": best,
            "accuracy_minus_best_baseline": float(diff.mean()),
            "accuracy_minus_best_baseline_se_paired_by_map": float(diff.std(ddof=1) / np.sqrt(diff.size)),
            "accuracy_over_real": float(g["accuracy"] / max(real["accuracy"], 1e-12))}


_ROW_NAMES = {
    "real_heldout": "real held-out subtomograms (ceiling)",
    "real_train": "real training subtomograms (classifier saw them; FD/coverage floor)",
    "traditional_simulation": "traditional simulation (CTF + wedge + white noise, SNR calibrated)",
    "traditional_simulation_wedge_noise": "traditional simulation, noise through the wedge (SNR calibrated)",
    "cyclegan": "pure CycleGAN (D -> S generator)",
    "physics_gan": "physics-informed GAN (learnable simulator)",
    "physics_residual_gan": "physics-informed GAN + bounded residual (ablation)",
    "gan": "GAN (D -> S generator)",
}


def _row_keys(metrics: dict[str, Any]) -> list[str]:
    skip = {"setting", "criteria"}
    return [k for k in metrics if k not in skip and isinstance(metrics[k], dict) and "accuracy" in metrics[k]]


def metrics_markdown(metrics: dict[str, Any]) -> str:
    """Markdown table (criteria and confusion matrices) of :func:`evaluate_cryoet`'s result."""
    lines = [
        "| method | n | classifier accuracy +- SE (SE by map) | classes predicted | Frechet distance | coverage | "
        "precision | recall | density | std (ratio to real) | SSIM |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for key in _row_keys(metrics):
        r = metrics[key]
        cells = [f"{r[m]:.3f}" if m in r else "--" for m in ("frechet_distance", "coverage", "precision", "recall",
                                                            "density")]
        lines.append(
            f"| {_ROW_NAMES.get(key, key)} | {r['n']} | {100 * r['accuracy']:.1f} % +- {100 * r['accuracy_se']:.1f} "
            f"({100 * r['accuracy_se_by_map']:.1f}) | {r['classes_predicted']} | " + " | ".join(cells)
            + f" | {r['std']:.3f} ({r['std_ratio']:.2f}) | " + (f"{r['ssim']:.3f}" if "ssim" in r else "--") + " |"
        )
    for name, crit in metrics.get("criteria", {}).items():
        lines += ["", f"Targets for {_ROW_NAMES.get(name, name)} (against the strongest baseline):", ""]
        lines += [f"- {k}: {'yes' if v else 'NO'}" if isinstance(v, bool) else
                  f"- {k}: {v:.4f}" if isinstance(v, float) else f"- {k}: {v}" for k, v in crit.items()]
    for key in _row_keys(metrics):
        cm = np.asarray(metrics[key]["confusion_matrix"])
        lines += ["", f"Confusion matrix, {_ROW_NAMES.get(key, key)} (rows: true class, columns: predicted class):", "",
                  "| true \\ pred | " + " | ".join(str(i + 1) for i in range(cm.shape[1])) + " |",
                  "|---" * (cm.shape[1] + 1) + "|"]
        lines += [f"| {i + 1} | " + " | ".join(str(v) for v in r) + " |" for i, r in enumerate(cm)]
    return "\n".join(lines) + "\n"


def _examples_png(path: Path, test: CryoETDomains, real: np.ndarray, volumes: dict[str, np.ndarray],
                  overwrite: bool) -> None:
    """One row per class: map, real, then every set of ``volumes`` (central slices across axes 0 and 1)."""
    tiles = []
    for k in np.unique(test.label):
        i = int(np.flatnonzero(test.label == k)[0])
        tiles += _central_slices(test.density[i], 0.0, 1.0)
        for v in (real, *volumes.values()):
            tiles += _central_slices(v[i], -SUBTOMO_SCALE, SUBTOMO_SCALE)
    _write(path, montage(tiles, ncols=2 * (2 + len(volumes)), pad=2), None, overwrite)
