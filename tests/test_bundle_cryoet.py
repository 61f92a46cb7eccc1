"""cryoet_gan bundle: workflow unit tests and every config end to end on a tiny synthetic DeepFinder-layout dataset."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import h5py
import mrcfile
import numpy as np
import pytest
import torch
from conftest import load_trained_network

from emgan_monai.data.cryoet import zscore
from emgan_monai.data.cryoet_calibration import (
    _simulate,
    calibrate_snr,
    estimate_snr,
    simulate_baseline,
    simulator_settings,
)
from emgan_monai.data.cryoet_density_inputs import load_density_inputs
from emgan_monai.data.cryoet_domains import classifier_datalist, cyclegan_datalist, load_deepfinder_domains, object_map
from emgan_monai.engines.gan_modes import gan_optimizer, gan_setting, wgan_optimizer
from emgan_monai.errors import DataError
from emgan_monai.evaluation.cryoet import (
    _classify,
    baseline_sets,
    calibrate_baselines,
    generate_subtomograms,
    generator_sets,
    metrics_table,
    score_sets,
)
from emgan_monai.evaluation.cryoet_inverse import inverse_scores, load_inverses
from emgan_monai.inferers import MCDropoutInferer
from emgan_monai.networks import CycleGANGenerator, PhysicsInformedGenerator, SubtomogramClassifier
from emgan_monai.physics.subtomogram_simulator import add_noise_snr
from emgan_monai.transforms.cryoet_value_range import density_to_network, network_to_subtomo, subtomo_to_network
from emgan_monai.transforms.density_maps import fit_to_box, shape_map

REPO = Path(__file__).resolve().parents[1]
BUNDLE = REPO / "bundles" / "cryoet_gan"
CONFIGS = BUNDLE / "configs"

# tiny networks / volumes shared by every CLI run
TINY = [
    *("--box", "16", "--generator_channels", "2", "--n_res_blocks", "1", "--dropout", "0.2", "--refine_channels", "4"),
    *("--residual_channels", "2", "--residual_blocks", "1"),
]
DATA = Path(os.environ.get("EMGAN_DATA", REPO.parent / "shared" / "data")) / "cryoet"


# ----------------------------------------------------------------------------------------------
# synthetic data in the DeepFinder toy layout
# ----------------------------------------------------------------------------------------------
def _shape(kind: int, size: int = 9) -> np.ndarray:
    g = np.indices((size, size, size)) - size // 2
    r = np.sqrt((g**2).sum(0))
    if kind == 1:
        return r <= 3
    if kind == 2:
        return np.all(np.abs(g) <= 2, axis=0)
    return (np.abs(g[0]) <= 4) & (np.abs(g[1]) <= 1) & (np.abs(g[2]) <= 1)


def _make_toy(root: Path, n_tomos: int = 3, size: int = 48, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    centres = [(12, 12, 12), (12, 34, 24), (34, 14, 32), (34, 34, 12), (24, 24, 36), (24, 36, 24)]
    for n in range(1, n_tomos + 1):
        target = np.zeros((size,) * 3, dtype=np.int8)
        lines = ["<objlist>"]
        for i, c in enumerate(centres):
            label = i % 3 + 1
            sl = tuple(slice(ci - 4, ci + 5) for ci in c)
            target[sl][_shape(label)] = label
            lines.append(f'  <object tomo_idx="{n}" class_label="{label}" x="{c[0]}" y="{c[1]}" z="{c[2]}"/>')
        lines.append("</objlist>")
        data = add_noise_snr(-(target > 0).astype(np.float32), 0.5, rng)
        with h5py.File(root / f"tomo{n}_data.h5", "w") as fh:
            fh["dataset"] = data
        with h5py.File(root / f"tomo{n}_target.h5", "w") as fh:
            fh["dataset"] = target
        (root / f"tomo{n}_objlist.xml").write_text("\n".join(lines))
    return root


@pytest.fixture(scope="module")
def toy(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cryoet")
    _make_toy(root / "deepfinder_toy")
    return root


def _run(config: str | list[str], *args: str) -> subprocess.CompletedProcess:
    files = [str(CONFIGS / c) for c in ([config] if isinstance(config, str) else config)]
    cfg = "[" + ",".join(repr(f) for f in files) + "]"
    cmd = [sys.executable, "-m", "monai.bundle", "run", "--config_file", cfg, "--bundle_root", str(BUNDLE), *args]
    env = dict(os.environ, OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return proc


# ----------------------------------------------------------------------------------------------
# unit tests of the cryo-ET bundle's Python (data, transforms, engines, physics, inferers, evaluation)
# ----------------------------------------------------------------------------------------------
def test_shape_map_binarises_and_smooths():
    v = np.zeros((16, 16, 16), np.float32)
    v[6:10, 6:10, 6:10] = np.linspace(0.2, 1.0, 4)[:, None, None]
    m = shape_map(v, iso=0.5, sigma=0.0)
    assert set(np.unique(m)) == {0.0, 1.0} and m.sum() == 2 * 16  # planes with 0.73 and 1.0 of the max
    s = shape_map(v, iso=0.5, sigma=1.0)
    assert s.max() == pytest.approx(1.0) and s.min() >= 0 and (s > 0).sum() > m.sum()
    assert not shape_map(np.zeros((8, 8, 8))).any()
    with pytest.raises(ValueError, match="iso"):
        shape_map(v, iso=1.5)


def test_object_map_keeps_the_central_particle():
    t = np.zeros((16, 16, 16), np.int8)
    t[6:10, 6:10, 6:10] = 3  # centre particle
    t[0:3, 0:3, 0:3] = 3  # neighbour of the same class
    t[12:15, 12:15, 12:15] = 5  # neighbour of another class
    m = object_map(t, 3)
    assert m.sum() == 64 and m[8, 8, 8] == 1 and m[1, 1, 1] == 0
    assert not object_map(t, 7).any()


def test_value_ranges_roundtrip():
    z = np.array([-6.0, -3.0, 0.0, 1.5, 9.0], np.float32)
    y = subtomo_to_network(z)
    assert y.min() == -1 and y.max() == 1
    np.testing.assert_allclose(network_to_subtomo(torch.from_numpy(y)), np.clip(z, -3, 3))
    np.testing.assert_allclose(density_to_network(np.array([0.0, 0.5, 1.0])), [-1, 0, 1])


def test_estimate_snr_recovers_requested_snr():
    rng = np.random.default_rng(0)
    masks = np.zeros((6, 16, 16, 16), np.float32)
    masks[:, 5:11, 5:11, 5:11] = 1
    subs = np.stack([add_noise_snr(-2.0 * m + 0.3, 0.05, rng) for m in masks])
    assert estimate_snr(subs, masks) == pytest.approx(0.05, rel=0.1)
    with pytest.raises(ValueError, match="empty"):
        estimate_snr(subs, np.zeros_like(masks))


def test_calibrate_snr_uses_the_measuring_estimator():
    """The simulator's nominal SNR is not what estimate_snr reads; calibration finds the SNR whose simulations read
    the target, so the baseline has the real data's SNR as the evaluation measures it."""
    dens = np.zeros((12, 16, 16, 16), np.float32)
    dens[:, 5:11, 6:10, 5:11] = 1
    masks = (dens > 0.5).astype(np.float32)
    target = 0.03
    snr = calibrate_snr(dens, masks, target, 20.0, seed=0)
    sims = _simulate(dens, 20.0, snr, 0, {})
    assert estimate_snr(sims, masks) == pytest.approx(target, rel=0.02)
    assert snr > 1.3 * target  # the nominal SNR differs from the estimate (about twice here)
    with pytest.raises(ValueError, match="cannot be reached"):
        calibrate_snr(dens, masks, 1e6, 20.0, strict=True)
    assert calibrate_snr(dens, masks, 1e6, 20.0) == 1e2  # non-strict: the nearer bound
    settings = simulator_settings({"defocus_um": 5.0})
    assert settings["defocus_um"] == 5.0 and settings["tilt_range"] == [-60.0, 60.0] and "snr" not in settings
    with pytest.raises(ValueError, match="unknown simulator"):
        simulator_settings({"defocus": 5.0})


def test_fit_to_box_never_crops_the_molecule_silently():
    m = np.zeros((40, 40, 40), np.float32)
    m[2:12, 20:30, 5:15] = 1  # off-centre, 10 voxels: fits a 16 box
    out = fit_to_box(m, 16)
    assert out.shape == (16, 16, 16) and out.sum() == m.sum()
    big = np.zeros((40, 40, 40), np.float32)
    big[5:30, 10:20, 10:20] = 1  # 25 voxels long
    with pytest.raises(DataError, match="more than the generator's box 16"):
        fit_to_box(big, 16, name="big.mrc")
    whole = fit_to_box(big, 16, allow_larger=True)
    assert whole.shape == (40, 40, 40) and whole.sum() == big.sum()
    assert fit_to_box(np.zeros((18, 18, 18), np.float32), 16, allow_larger=True).shape == (16, 16, 16)


def test_mmcif_maps_are_accepted(tmp_path):
    gemmi = pytest.importorskip("gemmi")
    pdb = tmp_path / "model.pdb"
    lines = [
        f"ATOM  {i + 1:5d}  CA  ALA A{i + 1:4d}    {x:8.3f}{y:8.3f}{z:8.3f}  1.00  0.00           C"
        for i, (x, y, z) in enumerate(np.random.default_rng(0).uniform(-30, 30, size=(200, 3)))
    ]
    pdb.write_text("\n".join(lines) + "\nEND\n")
    st = gemmi.read_structure(str(pdb))
    st.setup_entities()
    folder = tmp_path / "maps"
    folder.mkdir()
    st.make_mmcif_document().write_file(str(folder / "big_complex.cif"))
    import gzip

    (folder / "other.cif.gz").write_bytes(gzip.compress((folder / "big_complex.cif").read_bytes()))
    items = load_density_inputs(folder, voxel_size=20.0, box=16, iso=0.3, sigma=0.5)
    assert [name for name, _ in items] == ["big_complex", "other"]
    from emgan_monai.physics.atomic_models import density_from_pdb

    ref, _ = density_from_pdb(pdb, voxel_size=20.0)
    cif, _ = density_from_pdb(folder / "big_complex.cif", voxel_size=20.0)
    np.testing.assert_allclose(cif, ref, atol=1e-5 * float(ref.max()))
    np.testing.assert_array_equal(items[0][1], items[1][1])


def test_simulate_baseline_is_zscored():
    dens = np.zeros((3, 16, 16, 16), np.float32)
    dens[:, 6:10, 6:10, 6:10] = 1
    sims = simulate_baseline(dens, 20.0, snr=0.1, seed=1)
    assert sims.shape == dens.shape and sims.dtype == np.float32
    assert abs(float(sims.mean())) < 1e-4 and float(sims.std()) == pytest.approx(1.0, rel=1e-3)


def test_domains_datalists_and_optimizer(toy):
    d = load_deepfinder_domains(toy, [1, 2], box=16, sigma=0.5)
    assert len(d) == 12 and d.density.shape == (12, 16, 16, 16) and set(d.label.tolist()) == {1, 2, 3}
    assert np.all(d.mask[:, 8, 8, 8] == 1)  # every object map holds its particle centre
    binned = load_deepfinder_domains(toy, [1], box=8, binning=2)
    assert binned.subtomo.shape == (6, 8, 8, 8)
    items = cyclegan_datalist(d, seed=0)
    assert items[0]["density"].shape == (1, 16, 16, 16)
    assert all(-1 <= it["subtomo"].min() and it["subtomo"].max() <= 1 for it in items)
    cls = classifier_datalist(d)
    assert {c["label"] for c in cls} == {0, 1, 2}
    with pytest.raises(ValueError, match="tomogram 9"):
        load_deepfinder_domains(toy, [9])
    g = CycleGANGenerator(3, channels=2, n_res_blocks=1)
    assert isinstance(wgan_optimizer([g.parameters()], False), torch.optim.RMSprop)
    assert wgan_optimizer([g.parameters()], False).param_groups[0]["lr"] == 5e-5  # the WGAN paper's rate
    assert isinstance(wgan_optimizer(g.parameters(), True), torch.optim.Adam)
    clip = gan_optimizer([g, None], "wgan_clip")
    assert isinstance(clip, torch.optim.RMSprop) and clip.param_groups[0]["lr"] == 5e-5
    ls = gan_optimizer(g, "lsgan")
    assert isinstance(ls, torch.optim.Adam) and ls.param_groups[0]["betas"] == (0.5, 0.999)
    p = PhysicsInformedGenerator(box=16, refine_channels=2)
    groups = gan_optimizer([p], "lsgan", lr=1e-5, physics_lr=3e-3).param_groups
    assert [g_["lr"] for g_ in groups] == [1e-5, 3e-3] and len(groups[1]["params"]) == len(p.physics_parameters())
    assert gan_setting("wgan_clip", "spectral_norm") is False and gan_setting("lsgan", "clip_value") is None
    with pytest.raises(ValueError, match="gan_mode"):
        gan_setting("wgan_bogus", "lr")


def test_mc_dropout_inferer_std_zero_without_dropout_positive_with():
    """MCDropoutInferer: channels [mean, std]; no spread without dropout and without noise, a spread with dropout;
    a noisy generator without dropout (the shipped physics kind) gives the spread of its samples; with dropout the
    generator's noise is fixed; fixed noise refuses maps larger than the window."""
    from monai.inferers import SlidingWindowInferer

    dens = np.zeros((1, 1, 16, 16, 16), np.float32)
    dens[..., 5:11, 6:10, 4:12] = 1
    x = torch.from_numpy(density_to_network(dens))
    inferer = MCDropoutInferer(k=4, fix_noise=True, inferer=SlidingWindowInferer((16, 16, 16)))
    torch.manual_seed(0)
    stds = {}
    for p in (0.0, 0.5):
        g = CycleGANGenerator(3, channels=2, n_res_blocks=1, dropout=p, noise_channels=0)  # deterministic but dropout
        out = inferer(x, g)
        assert out.shape == (1, 2, 16, 16, 16)
        stds[p] = out[:, 1]
        assert inferer.noise_fixed(g) is (p > 0)
    assert torch.allclose(stds[0.0], torch.zeros(()), atol=1e-6) and float(stds[0.5].mean()) > 1e-4
    phys = PhysicsInformedGenerator(box=16, refine_channels=0)
    assert not inferer.noise_fixed(phys) and float(inferer(x, phys)[:, 1].mean()) > 0.1 / 3
    g = CycleGANGenerator(3, channels=2, n_res_blocks=1, dropout=0.5, decoder_noise=True, input_noise_std=0.2).eval()
    assert inferer.noise_fixed(g)
    torch.manual_seed(1)
    mean, std = inferer(x, g).split(1, dim=1)
    torch.manual_seed(1)
    from emgan_monai.networks import mc_dropout

    ref_mean, ref_std = mc_dropout(g, x, k=4, noise=g.sample_noise(x))
    assert torch.equal(mean, ref_mean) and torch.equal(std, ref_std)
    with pytest.raises(ValueError, match="box size"):
        inferer(torch.zeros(1, 1, 24, 24, 24), g)
    with pytest.raises(ValueError, match="at least 2"):
        MCDropoutInferer(k=1)


# ----------------------------------------------------------------------------------------------
# every config through `python -m monai.bundle run`
# ----------------------------------------------------------------------------------------------
def test_bundle_configs_end_to_end(toy, tmp_path):
    small = ["--critic_channels", "[4, 8, 8]", "--binning", "1", "--shape_sigma", "0.5", "--snapshot_interval", "2"]
    common = [
        "--dataset_dir",
        str(toy),
        "--train_tomos",
        "[1]",
        "--val_tomos",
        "[2]",
        "--batch_size",
        "2",
        "--val_interval",
        "1",
        *TINY,
        *small,
    ]
    # physics-informed GAN (the default): calibrated on the training data, EMA weights saved, no cycle
    phys_dir = tmp_path / "physics"
    _run("train.json", "--output_dir", str(phys_dir), "--max_epochs", "1", *common)
    phys = PhysicsInformedGenerator(box=16, refine_channels=4)
    phys.load_state_dict(torch.load(phys_dir / "model.pt", weights_only=True))
    calibration = json.loads((phys_dir / "calibration.json").read_text())
    assert calibration["snr"] > 0 and calibration["gain"] > 0
    ckpt = torch.load(phys_dir / "checkpoints" / "checkpoint_final.pt", weights_only=True)
    assert {"g_ds", "g_ds_ema", "critic_s", "g_optimizer", "d_optimizer", "trainer", "rng"} <= set(ckpt)
    assert "g_sd" not in ckpt and not (phys_dir / "g_sd.pt").exists()
    assert len(ckpt["g_optimizer"]["param_groups"]) == 2  # physics parameters have their own learning rate
    assert (phys_dir / "snapshots" / "snapshots.csv").is_file()
    first = int(ckpt["trainer"]["iteration"])
    # resume continues from the checkpoint (epoch 1 -> 2)
    _run("train.json", "--output_dir", str(phys_dir), "--max_epochs", "2", "--resume", "true", *common)
    resumed = torch.load(phys_dir / "checkpoints" / "checkpoint_final.pt", weights_only=True)
    assert int(resumed["trainer"]["iteration"]) == 2 * first

    # pure CycleGAN with the paper's WGAN (weight clipping on plain critics, RMSprop at 5e-5)
    run_dir = tmp_path / "cyclegan"
    _run(
        "train.json",
        "--output_dir",
        str(run_dir),
        "--max_epochs",
        "1",
        "--generator_kind",
        "cyclegan",
        "--gan_mode",
        "wgan_clip",
        *common,
    )
    net = CycleGANGenerator(3, channels=2, n_res_blocks=1, dropout=0.2, decoder_noise=True, input_noise_std=0.2)
    net.load_state_dict(torch.load(run_dir / "model.pt", weights_only=True))
    ckpt = torch.load(run_dir / "checkpoints" / "checkpoint_final.pt", weights_only=True)
    assert (run_dir / "g_sd.pt").is_file() and "g_sd" in ckpt and "critic_d" in ckpt
    assert (
        ckpt["d_optimizer"]["param_groups"][0]["initial_lr"] == 5e-5
        and "alpha" in ckpt["d_optimizer"]["param_groups"][0]
    )
    assert not any("parametrizations" in k for k in ckpt["critic_s"])  # no spectral norm under clipping
    assert max(float(v.abs().max()) for k, v in ckpt["critic_s"].items() if k.endswith("weight")) <= 0.01 + 1e-7
    # the working CycleGAN: G_ds = physics + zero-initialised ResNet, G_sd pre-trained on simulated pairs, rotated
    # maps, Wasserstein-GP critics with spectral norm (Adam), squared-error map cycle
    gp_dir = tmp_path / "train_gp"
    _run(
        "train.json",
        *("--output_dir", str(gp_dir), "--max_epochs", "1", "--generator_kind", "physics_residual"),
        *("--gan_mode", "wgan_gp", "--spectral_norm", "true", "--rotate_prob", "1.0", "--cycle_criterion", "mse"),
        *("--g_sd_pretrain_steps", "3"),
        *common,
    )
    ckpt = torch.load(gp_dir / "checkpoints" / "checkpoint_final.pt", weights_only=True)
    assert tuple(ckpt["d_optimizer"]["param_groups"][0]["betas"]) == (0.5, 0.9)
    assert any("parametrizations" in k for k in ckpt["critic_s"]) and any(
        "parametrizations" in k for k in ckpt["critic_d"]
    )
    assert len(ckpt["g_optimizer"]["param_groups"]) == 2  # the simulator's physics keeps its own learning rate
    assert json.loads((gp_dir / "g_sd_pretrain.json").read_text())["steps"] == 3
    pretrained = torch.load(gp_dir / "g_sd_pretrained.pt", weights_only=True)
    assert any(not torch.equal(pretrained[k], v) for k, v in ckpt["g_sd"].items() if k in pretrained)
    assert json.loads((gp_dir / "calibration.json").read_text())["gain"] > 0

    # classifier
    clf_dir = tmp_path / "clf"
    _run(
        "train_classifier.json",
        "--dataset_dir",
        str(toy),
        "--output_dir",
        str(clf_dir),
        "--train_tomos",
        "[1]",
        "--val_tomos",
        "[2]",
        "--max_epochs",
        "2",
        "--batch_size",
        "4",
        "--val_interval",
        "1",
        "--box",
        "16",
        "--binning",
        "1",
        "--num_classes",
        "3",
    )
    clf = SubtomogramClassifier(3, num_classes=3, channels=(16, 32, 64))
    clf.load_state_dict(torch.load(clf_dir / "classifier.pt", weights_only=True))

    # inference on the embedded sample maps, with either generator kind
    inf_dir = tmp_path / "inference"
    _run(
        "inference.json",
        "--output_dir",
        str(inf_dir),
        "--model_path",
        str(phys_dir / "model.pt"),
        "--n_samples",
        "2",
        *TINY,
    )
    summary = json.loads((inf_dir / "synthesis.json").read_text())
    assert summary["n_maps"] == len(list((BUNDLE / "sample").glob("*.mrc"))) >= 1
    first = inf_dir / summary["files"][0]["samples"][1]
    with mrcfile.open(first) as mrc:
        assert mrc.data.shape == (16, 16, 16) and mrc.data.dtype == np.float32 and np.isfinite(mrc.data).all()
        assert mrc.voxel_size.x == pytest.approx(20.0)
    assert (inf_dir / "montage.png").stat().st_size > 0
    _run(
        "inference.json",
        "--output_dir",
        str(tmp_path / "inference_cg"),
        "--model_path",
        str(run_dir / "model.pt"),
        "--generator_kind",
        "cyclegan",
        "--n_samples",
        "2",
        *TINY,
    )
    _run(
        "inference.json",
        *("--output_dir", str(tmp_path / "inference_pr"), "--model_path", str(gp_dir / "model.pt")),
        *("--generator_kind", "physics_residual", "--n_samples", "2"),
        *TINY,
    )
    summary = json.loads((tmp_path / "inference_pr" / "synthesis.json").read_text())
    with mrcfile.open(tmp_path / "inference_pr" / summary["files"][0]["samples"][1]) as mrc:
        assert mrc.data.shape == (16, 16, 16) and np.isfinite(mrc.data).all() and mrc.data.std() > 0
    # a map whose molecule is larger than the box is tiled, not cut
    big_dir = tmp_path / "big_maps"
    big_dir.mkdir()
    big = np.zeros((40, 40, 40), np.float32)
    big[4:36, 14:26, 14:26] = 1.0
    with mrcfile.new(big_dir / "long.mrc") as mrc:
        mrc.set_data(big)
        mrc.voxel_size = 20.0
    _run(
        "inference.json",
        "--input_dir",
        str(big_dir),
        "--output_dir",
        str(tmp_path / "inference_big"),
        "--model_path",
        str(phys_dir / "model.pt"),
        "--n_samples",
        "1",
        *TINY,
    )
    with mrcfile.open(tmp_path / "inference_big" / "long_sample_00.mrc") as mrc:
        assert mrc.data.shape == (40, 40, 40)
    # no silent overwrite
    configs = str(CONFIGS / "inference.json")
    cmd = [
        sys.executable,
        "-m",
        "monai.bundle",
        "run",
        "--config_file",
        configs,
        "--bundle_root",
        str(BUNDLE),
        "--output_dir",
        str(inf_dir),
        "--model_path",
        str(phys_dir / "model.pt"),
        "--n_samples",
        "2",
        *TINY,
    ]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert proc.returncode != 0 and "exists" in proc.stderr + proc.stdout

    # MC-dropout uncertainty (the CycleGAN generator carries dropout)
    unc_dir = tmp_path / "uncertainty"
    _run(
        "inference_uncertainty.json",
        "--output_dir",
        str(unc_dir),
        "--model_path",
        str(run_dir / "model.pt"),
        "--generator_kind",
        "cyclegan",
        "--mc_samples",
        "3",
        *TINY,
    )
    unc = json.loads((unc_dir / "uncertainty.json").read_text())
    assert unc["k"] == 3 and all(f["mean_std"] > 0 for f in unc["files"])
    assert (unc_dir / "uncertainty.png").is_file() and (unc_dir / unc["files"][0]["std"]).is_file()

    # evaluation table: both generators, two calibrated baselines, real data; one normalisation
    ev_dir = tmp_path / "evaluate"
    files = {
        "physics_gan": ["physics", str(phys_dir / "model.pt")],
        "physics_cyclegan": ["physics_residual", str(gp_dir / "model.pt")],
        "cyclegan": ["cyclegan", str(run_dir / "model.pt")],
    }
    inverse_files = {"physics_cyclegan_g_sd": str(gp_dir / "g_sd.pt"), "cyclegan_g_sd": str(run_dir / "g_sd.pt")}
    _run(
        ["train.json", "evaluate.json"],
        "--dataset_dir",
        str(toy),
        "--output_dir",
        str(ev_dir),
        "--generator_files",
        json.dumps(files),
        "--inverse_files",
        json.dumps(inverse_files),
        "--classifier_path",
        str(clf_dir / "classifier.pt"),
        "--train_tomos",
        "[1]",
        "--test_tomos",
        "[2, 3]",
        "--binning",
        "1",
        "--shape_sigma",
        "0.5",
        "--num_classes",
        "3",
        "--prdc_k",
        "3",
        *TINY,
    )
    metrics = json.loads((ev_dir / "metrics.json").read_text())
    for method in (
        "physics_gan",
        "physics_cyclegan",
        "cyclegan",
        "traditional_simulation",
        "traditional_simulation_wedge_noise",
    ):
        row = metrics[method]
        for key in (
            "accuracy",
            "accuracy_se",
            "accuracy_se_by_map",
            "precision",
            "recall",
            "density",
            "coverage",
            "frechet_distance",
            "ssim",
            "std_ratio",
        ):
            assert np.isfinite(row[key]), (method, key)
        assert np.asarray(row["confusion_matrix"]).shape == (3, 3) and np.sum(row["confusion_matrix"]) == 12 * 8
        p, n = row["accuracy"], row["n"]
        assert row["accuracy_se"] == pytest.approx(np.sqrt(p * (1 - p) / n))
    assert metrics["setting"]["n_samples_per_map"] == 8
    base = metrics["setting"]["baselines"]["traditional_simulation"]
    assert base["snr"] > 0 and base["simulator"]["defocus_um"] == 3.0
    assert metrics["setting"]["baselines"]["traditional_simulation_wedge_noise"]["simulator"]["noise_in_wedge"] is True
    assert set(metrics["criteria"]) == {"physics_gan", "physics_cyclegan", "cyclegan"}
    inverse = metrics["inverse"]  # the S -> D direction against the true maps, beside the low-pass baseline
    assert list(inverse) == [
        "physics_cyclegan_g_sd",
        "physics_cyclegan_g_sd_mean",
        "cyclegan_g_sd",
        "cyclegan_g_sd_mean",
        "lowpass_baseline",
        "inverted_subtomogram",
        "mean_training_map",
    ]
    assert all(-1 <= r["correlation"] <= 1 and r["n"] == 12 for r in inverse.values())
    assert inverse["lowpass_baseline"]["sigma"] > 0
    assert set(metrics["inverse_criteria"]) == {"physics_cyclegan_g_sd", "cyclegan_g_sd"}
    assert metrics["real_heldout"]["std_ratio"] == 1.0
    text = (ev_dir / "metrics.md").read_text()
    assert "| physics-informed GAN" in text and "+-" in text and (ev_dir / "examples.png").is_file()
    assert "S -> D direction" in text and "| lowpass_baseline | 12 |" in text and "beats the low-pass filter" in text


def _evaluate(generators: dict, classifier, train, test, voxel_size: float, n_samples: int, prdc_k: int) -> dict:
    """The steps of ``evaluate.json`` in Python."""
    baselines = calibrate_baselines(train, voxel_size)
    sets = {**baseline_sets(test, baselines, n_samples, voxel_size), **generator_sets(test, generators, n_samples)}
    rows = score_sets(classifier, train, test, sets, prdc_k=prdc_k)
    return metrics_table(rows, {"n_samples_per_map": n_samples}, train, baselines, generators)


def test_evaluation_uses_one_normalisation(toy, tmp_path):
    """A generator that returns the real subtomogram of the same particle at half its amplitude must show std ratio
    0.5: with per-set z-scoring (the old evaluation) it would look perfect."""

    class Doubling(torch.nn.Module):
        """Returns 0.5 x the real subtomograms of the held-out particles, in order (network units)."""

        def __init__(self, volumes: np.ndarray):
            super().__init__()
            self.volumes = torch.from_numpy(volumes)[:, None]
            self.i = 0

        def forward(self, x):
            out = self.volumes[self.i : self.i + len(x)]
            self.i += len(x)
            return out

    train = load_deepfinder_domains(toy, [1], box=16, sigma=0.5)
    test = load_deepfinder_domains(toy, [2, 3], box=16, sigma=0.5)
    z = zscore(test.subtomo, train.stats())
    doubling = Doubling(np.clip(0.5 * z / 3, -1, 1).astype(np.float32))
    clf = SubtomogramClassifier(3, num_classes=3, channels=(4, 8, 8))
    m = _evaluate({"double": doubling}, clf, train, test, voxel_size=20.0, n_samples=1, prdc_k=2)
    expected = float(np.clip(0.5 * z, -3, 3).std() / z.std())
    assert m["double"]["std_ratio"] == pytest.approx(expected, rel=1e-3) and m["double"]["std_ratio"] < 0.55
    assert m["criteria"]["double"]["std_within_20pct_of_real"] is False


@pytest.mark.parametrize("kind", ["cyclegan", "physics"])
def test_multi_gpu_config_two_ranks(toy, tmp_path, kind):
    """``train.json`` + ``multi_gpu_train.json`` under torchrun with two CPU processes (gloo): the ranks' generator
    weights stay identical and rank 0 saves plain (unwrapped) weights, for both generator kinds."""
    out = tmp_path / "ddp"
    extra = tmp_path / "save_each_rank.json"
    extra.write_text(json.dumps({"finalize": [
        "$torch.save(@network.module.state_dict(), os.path.join(@output_dir, 'rank' + os.environ['RANK'] + '.pt'))",
        "$emgan_monai.engines.utils.leave_process_group()",
    ]}))  # fmt: skip
    files = [str(CONFIGS / c) for c in ("train.json", "multi_gpu_train.json")] + [str(extra)]
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "monai.bundle",
        "run",
        "--config_file",
        "[" + ",".join(repr(f) for f in files) + "]",
        "--bundle_root",
        str(BUNDLE),
        "--dataset_dir",
        str(toy),
        "--output_dir",
        str(out),
        "--train_tomos",
        "[1]",
        "--val_tomos",
        "[2]",
        "--max_epochs",
        "1",
        "--batch_size",
        "2",
        "--val_interval",
        "1",
        "--critic_channels",
        "[4, 8, 8]",
        "--binning",
        "1",
        "--generator_kind",
        kind,
        "--snapshot_interval",
        "1000",
        *TINY,
    ]
    env = dict(os.environ, OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    w0 = torch.load(out / "rank0.pt", map_location="cpu", weights_only=True)
    w1 = torch.load(out / "rank1.pt", map_location="cpu", weights_only=True)
    for k in w0:
        torch.testing.assert_close(w0[k], w1[k], rtol=0, atol=0)
    if kind == "cyclegan":
        net = CycleGANGenerator(3, channels=2, n_res_blocks=1, dropout=0.2, decoder_noise=True, input_noise_std=0.2)
    else:
        net = PhysicsInformedGenerator(box=16, refine_channels=4)
    net.load_state_dict(torch.load(out / "model.pt", weights_only=True))


def test_density_input_is_the_folder_loader_per_file():
    """The per-file D-domain input (used by the MONAI Label task) equals the folder loader's, is resampled to the
    requested voxel size and box, and lies in [0, 1]."""
    from emgan_monai.data.cryoet_density_inputs import density_input, load_density_inputs

    sample = BUNDLE / "sample"
    items = dict(load_density_inputs(sample, voxel_size=20.0, box=16, iso=0.3, sigma=0.5))
    first = sorted(sample.glob("*.mrc"))[0]
    one = density_input(first, voxel_size=20.0, box=16, iso=0.3, sigma=0.5)
    assert one.shape == (16, 16, 16) and one.dtype == np.float32
    assert 0.0 <= one.min() and one.max() <= 1.0 and one.max() > 0.5
    np.testing.assert_array_equal(one, items[first.stem])
    assert density_input(first, voxel_size=20.0, box=24, iso=0.3, sigma=0.5).shape == (24, 24, 24)


# ----------------------------------------------------------------------------------------------
# the shipped generator must not collapse
# ----------------------------------------------------------------------------------------------
def _shipped(config: str, key: str):
    """``key`` of a standalone config, or of ``evaluate.json`` merged after its base ``train.json``."""
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    files = ["train.json", config] if config == "evaluate.json" else [config]
    parser.read_config([str(CONFIGS / f) for f in files])
    parser["bundle_root"] = str(BUNDLE)
    return parser, parser.get_parsed_content(key, instantiate=True)


def _collapse_report(net: torch.nn.Module) -> dict:
    """Classes predicted, largest class fraction, accuracy and std ratio of ``net``'s outputs on the held-out toy
    tomograms (2 samples per map), with the shipped classifier and the evaluation's normalisation."""
    ev, clf = _shipped("evaluate.json", "classifier_def")
    clf.load_state_dict(torch.load(BUNDLE / "models" / "classifier.pt", map_location="cpu", weights_only=True))
    kw = dict(box=ev["box"], sigma=ev["shape_sigma"], binning=ev["binning"])
    stats = load_deepfinder_domains(DATA, ev["train_tomos"], **kw).stats()
    test = load_deepfinder_domains(DATA, ev["test_tomos"], **kw)
    real = zscore(test.subtomo, stats)
    gen = generate_subtomograms(net, test.density, 2, seed=0)
    logits, _ = _classify(clf, gen, torch.device("cpu"))
    pred = logits.argmax(1)
    counts = np.bincount(pred, minlength=9)
    return {
        "classes": int(np.unique(pred).size),
        "largest_fraction": float(counts.max() / pred.size),
        "accuracy": float((pred == np.concatenate([test.label - 1] * 2)).mean()),
        "std_ratio": float(gen.std() / real.std()),
        "counts": counts.tolist(),
    }


def _collapsed(report: dict) -> bool:
    return (
        report["classes"] < 8
        or report["largest_fraction"] > 0.5
        or abs(report["std_ratio"] - 1.0) > 0.2
        or report["accuracy"] <= 2 / 9
    )


_HAS_DATA = (DATA / "deepfinder_toy" / "tomo6_data.h5").is_file()


@pytest.mark.skipif(not _HAS_DATA, reason="needs the DeepFinder toy tomograms (EMGAN_DATA)")
def test_collapse_check_rejects_a_collapsed_generator():
    """The check used on the shipped weights fails for a generator that ignores its input (one fixed real subtomogram
    for every map, as the 0.1.0 weights effectively did) and for one with the right texture at half amplitude."""
    ev, _ = _shipped("evaluate.json", "classifier_def")
    train = load_deepfinder_domains(
        DATA, ev["train_tomos"], box=ev["box"], sigma=ev["shape_sigma"], binning=ev["binning"]
    )
    fixed = torch.from_numpy(subtomo_to_network(zscore(train.subtomo[0], train.stats())))[None, None]

    class Constant(torch.nn.Module):
        def forward(self, x):
            return fixed.expand(len(x), -1, -1, -1, -1)

    assert _collapsed(_collapse_report(Constant()))
    _, shipped = _shipped("inference.json", "network_def")
    shipped.load_state_dict(torch.load(BUNDLE / "models" / "model.pt", map_location="cpu", weights_only=True))

    class Half(torch.nn.Module):
        def forward(self, x):
            return 0.5 * shipped(x)

    assert _collapsed(_collapse_report(Half().eval()))


def test_shipped_generator_does_not_collapse():
    """``models/model.pt`` with ``inference.json``'s network: on the held-out toy tomograms (when the data are
    present) the shipped classifier must find at least 8 of the 9 classes in the generated subtomograms, no class may
    take more than half of them, accuracy must be clearly above chance, and their standard deviation must be within
    20 % of the real held-out data's (one normalisation: z units of the real training set). Without the data, the
    embedded sample maps must give varied outputs with a standard deviation within 20 % of the real training data's
    (1 in z units)."""
    parser, net = _shipped("inference.json", "network_def")
    net.load_state_dict(torch.load(BUNDLE / "models" / "model.pt", map_location="cpu", weights_only=True))
    net.eval()
    if _HAS_DATA:
        report = _collapse_report(net)
        assert not _collapsed(report), report
    else:
        items = load_density_inputs(
            BUNDLE / "sample", parser["voxel_size"], parser["box"], parser["iso"], parser["shape_sigma"]
        )
        maps = np.stack([m for _, m in items])
        gen = generate_subtomograms(net, maps, 4, seed=0).reshape(4, len(maps), *maps.shape[1:])
        assert abs(float(gen.std()) - 1.0) <= 0.2
        assert float(gen.std(axis=0).mean()) > 0.1  # samples of one map differ
        assert float(np.abs(gen[:, 0].mean(0) - gen[:, -1].mean(0)).mean()) > 0.01  # different maps differ


def _shipped_cyclegan():
    """The shipped working CycleGAN: ``G_ds`` through ``inference.json``'s network with ``generator_kind
    physics_residual``, ``G_sd`` with ``evaluate.json``'s inverse definition."""
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(CONFIGS / "inference.json"))
    parser.update({"bundle_root": str(BUNDLE), "generator_kind": "physics_residual"})
    g_ds = parser.get_parsed_content("network_def", instantiate=True)
    g_ds.load_state_dict(torch.load(BUNDLE / "models" / "g_ds_physics_cyclegan.pt", weights_only=True))
    ev, _ = _shipped("evaluate.json", "classifier_def")
    g_sd = load_inverses(
        {"g_sd": BUNDLE / "models" / "g_sd_physics_cyclegan.pt"}, ev.get_parsed_content("inverse_kwargs")
    )["g_sd"]
    return g_ds.eval(), g_sd, ev


def test_shipped_cyclegan_keeps_the_class_and_its_inverse_beats_the_low_pass():
    """``models/g_ds_physics_cyclegan.pt``: on the held-out toy tomograms (when present) at least 8 of 9 classes,
    no class over half of the outputs, accuracy clearly above chance, std within 20 % of real (the collapse check of
    the shipped generator); ``models/g_sd_physics_cyclegan.pt`` reads more of each held-out particle than the
    low-pass filter (particle-specific correlation, mean of 8 draws). Without the data: the sample maps give
    varied outputs at the real data's amplitude."""
    g_ds, g_sd, ev = _shipped_cyclegan()
    if not _HAS_DATA:
        items = load_density_inputs(BUNDLE / "sample", 20.0, 16, 0.3, 0.5)
        maps = np.stack([m for _, m in items])
        gen = generate_subtomograms(g_ds, maps, 4, seed=0).reshape(4, len(maps), *maps.shape[1:])
        assert abs(float(gen.std()) - 1.0) <= 0.2 and float(gen.std(axis=0).mean()) > 0.1
        return
    report = _collapse_report(g_ds)
    assert not _collapsed(report), report
    kw = dict(box=ev["box"], sigma=ev["shape_sigma"], binning=ev["binning"])
    train = load_deepfinder_domains(DATA, ev["train_tomos"], **kw)
    test = load_deepfinder_domains(DATA, ev["test_tomos"], **kw)
    rows = inverse_scores({"g_sd": g_sd}, train, test, n_samples=8)
    assert rows["g_sd_mean"]["specific_correlation"] > rows["lowpass_baseline"]["specific_correlation"], rows


def test_real_toy_tomograms_train_then_inference(tmp_path):
    """``train.json`` (physics-informed GAN, the default) for one epoch of two iterations on the REAL DeepFinder
    tomograms (train 1, validate 2, binning 2, box 16), then ``inference.json`` with its weights on two real density
    templates (``templates_10A``, resampled from 10 to 20 A/voxel)."""
    toy = DATA / "deepfinder_toy"
    templates = DATA / "templates_10A"
    for path in (toy / "tomo1_data.h5", toy / "tomo2_data.h5", templates / "1bxn.mrc", templates / "3cf3.mrc"):
        if not path.is_file():
            pytest.skip(f"real cryo-ET data not found: {path}")
    run = tmp_path / "physics"
    # 27 particles in tomogram 1, batch 12 with drop_last: 2 iterations
    proc = _run(
        "train.json",
        "--dataset_dir",
        str(DATA),
        "--output_dir",
        str(run),
        "--train_tomos",
        "[1]",
        "--val_tomos",
        "[2]",
        "--binning",
        "2",
        "--batch_size",
        "12",
        "--max_epochs",
        "1",
        "--val_interval",
        "1",
        "--critic_channels",
        "[4, 8, 8]",
        "--snapshot_interval",
        "1000",
        *TINY,
    )
    log = proc.stdout + proc.stderr
    assert "val_ssim" in log and "Epoch[1] Complete" in log, log[-3000:]  # validated on the held-out tomogram
    ckpt = torch.load(run / "checkpoints" / "checkpoint_final.pt", map_location="cpu", weights_only=True)
    assert {"g_ds", "g_ds_ema", "critic_s", "g_optimizer", "d_optimizer", "trainer", "rng"} <= set(ckpt)
    assert "g_sd" not in ckpt  # physics generator: one direction only
    assert int(ckpt["trainer"]["iteration"]) == 2 and int(ckpt["trainer"]["epoch_length"]) == 2
    calibration = json.loads((run / "calibration.json").read_text())
    assert np.isfinite(calibration["snr"]) and calibration["snr"] > 0 and calibration["gain"] > 0
    load_trained_network(
        CONFIGS / "train.json",
        BUNDLE,
        run / "model.pt",
        box=16,
        generator_channels=2,
        n_res_blocks=1,
        dropout=0.2,
        refine_channels=4,
    )

    maps = tmp_path / "maps"
    maps.mkdir()
    for name in ("1bxn", "3cf3"):
        (maps / f"{name}.mrc").write_bytes((templates / f"{name}.mrc").read_bytes())
    out = tmp_path / "inference"
    _run(
        "inference.json",
        "--input_dir",
        str(maps),
        "--output_dir",
        str(out),
        "--model_path",
        str(run / "model.pt"),
        "--n_samples",
        "2",
        *TINY,
    )
    summary = json.loads((out / "synthesis.json").read_text())
    assert summary["n_maps"] == 2 and len(summary["files"]) == 2
    for entry in summary["files"]:
        assert len(entry["samples"]) == 2
        vols = []
        for sample in entry["samples"]:
            with mrcfile.open(out / sample) as mrc:
                vol = mrc.data.copy()
                assert mrc.voxel_size.x == pytest.approx(20.0)
            assert vol.shape == (16, 16, 16) and vol.dtype == np.float32
            assert np.isfinite(vol).all() and vol.std() > 0, sample
            vols.append(vol)
        assert not np.array_equal(vols[0], vols[1])  # a stochastic generator: two samples of one map differ


# ----------------------------------------------------------------------------------------------
# zoo form: standalone configs made of MONAI components, a scriptable network_def
# ----------------------------------------------------------------------------------------------
def _parser(config: str | list[str], **overrides):
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config([str(CONFIGS / c) for c in ([config] if isinstance(config, str) else config)])
    parser.update({"bundle_root": str(BUNDLE), **overrides})
    return parser


@pytest.mark.parametrize("refine_channels", [0, 4])
def test_physics_generator_scripts_with_the_same_outputs(refine_channels):
    """``torch.jit.script`` of ``inference.json``'s ``network_def`` (the zoo's ckpt_export scripts it) gives exactly the
    eager outputs for a fixed seed, a given noise tensor and a given noise list."""
    net = _parser("inference.json", refine_channels=refine_channels, dropout=0.2).get_parsed_content("network_def")
    if refine_channels:
        torch.manual_seed(0)
        for p in net.refine.parameters():  # the last layer starts at zero: make the residual matter
            torch.nn.init.normal_(p, std=0.1)
    else:
        net.load_state_dict(torch.load(BUNDLE / "models" / "model.pt", map_location="cpu", weights_only=True))
    net.eval()
    scripted = torch.jit.script(net)
    x = torch.rand(2, 1, 16, 16, 16, generator=torch.Generator().manual_seed(1)) * 2 - 1
    torch.manual_seed(3)
    eager = net(x)
    torch.manual_seed(3)
    assert torch.equal(scripted(x), eager)
    noise = net.sample_noise(x)
    assert torch.equal(scripted(x, noise), net(x, noise)) and torch.equal(scripted(x, noise[0]), net(x, noise[0]))
    assert not torch.equal(net(x, noise), eager)  # the noise matters
    with pytest.raises(Exception, match="expected"):
        scripted(torch.zeros(1, 1, 8, 8, 8))


def test_inference_preprocessing_is_the_density_input(tmp_path):
    """``inference.json``'s MONAI preprocessing (LoadImaged with the MRC / atomic-model readers, Transposed,
    ResampleMapd, ShapeMapd, FitToBoxd, ScaleIntensityRanged) gives exactly the generator input of
    :func:`density_input` for MRC maps and PDB models; larger molecules are refused or kept whole."""
    from emgan_monai.data.cryoet_density_inputs import density_input

    pdb = tmp_path / "model.pdb"
    lines = [
        f"ATOM  {i + 1:5d}  CA  ALA A{i + 1:4d}    {x:8.3f}{y:8.3f}{z:8.3f}  1.00  0.00           C"
        for i, (x, y, z) in enumerate(np.random.default_rng(0).uniform(-40, 40, size=(300, 3)) * [1, 0.6, 0.3])
    ]
    pdb.write_text("\n".join(lines) + "\nEND\n")
    parser = _parser("inference.json")
    pre = parser.get_parsed_content("preprocessing")
    for path in [*sorted((BUNDLE / "sample").glob("*.mrc")), pdb]:
        item = pre({"image": str(path), "name": path.stem, "sample": 0})
        shape_map = density_input(path, 20.0, 16, 0.3, 0.5)
        assert item["image"].shape == (1, 16, 16, 16)
        np.testing.assert_array_equal(item["image"][0].numpy(), density_to_network(shape_map))
        np.testing.assert_array_equal(item["input"][0].numpy(), shape_map)
        np.testing.assert_allclose(np.diag(item["image"].affine.numpy())[:3], 20.0)
        assert item["image"].meta["patch_index"] == "00"
        later = pre({"image": str(path), "name": path.stem, "sample": 3})
        assert "input" not in later and later["image"].meta["patch_index"] == "03"
    big = tmp_path / "long.mrc"
    vol = np.zeros((40, 40, 40), np.float32)
    vol[4:36, 14:26, 14:26] = 1.0
    with mrcfile.new(big) as mrc:
        mrc.set_data(vol)
        mrc.voxel_size = 20.0
    assert pre({"image": str(big), "name": "long", "sample": 0})["image"].shape == (1, 40, 40, 40)
    refusing = _parser("inference.json", tile_large_maps=False).get_parsed_content("preprocessing")
    with pytest.raises(RuntimeError) as err:
        refusing({"image": str(big), "name": "long", "sample": 0})
    assert isinstance(err.value.__cause__, DataError) and "more than the generator's box 16" in str(err.value.__cause__)


def _bundle_run(config: str, *args: str, cwd: Path = BUNDLE) -> subprocess.CompletedProcess:
    """``python -m monai.bundle run --config_file configs/<config>`` from ``cwd`` (single-file form)."""
    cmd = [sys.executable, "-m", "monai.bundle", "run", "--config_file", str(CONFIGS / config), *args]
    env = dict(os.environ, OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_inference_configs_standalone_with_the_shipped_generator(tmp_path):
    """Both inference configs run alone from the bundle folder with ``models/model.pt``: the samples are the shipped
    generator's outputs for the seed (draw ``j`` of a map = the ``j``-th forward pass after seeding, maps in file
    order), saved as MRC with the voxel size; a rerun refuses to overwrite and changes nothing; ``--overwrite true``
    replaces the files and rewrites the record. The uncertainty config writes mean and std per map."""
    from monai.inferers import SlidingWindowInferer

    from emgan_monai.data.cryoet_density_inputs import density_input

    out = tmp_path / "inference"
    proc = _bundle_run("inference.json", "--output_dir", str(out), "--n_samples", "2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((out / "synthesis.json").read_text())
    maps = sorted(p.stem for p in (BUNDLE / "sample").glob("*.mrc"))
    assert [f["map"] for f in summary["files"]] == maps and summary["n_samples"] == 2 and summary["failed"] == []
    assert summary["files"][0] == {
        "map": maps[0],
        "input": f"{maps[0]}_input.mrc",
        "samples": [f"{maps[0]}_sample_00.mrc", f"{maps[0]}_sample_01.mrc"],
    }
    _, net = _shipped("inference.json", "network_def")
    net.load_state_dict(torch.load(BUNDLE / "models" / "model.pt", map_location="cpu", weights_only=True))
    net.eval()
    inferer = SlidingWindowInferer((16, 16, 16), sw_batch_size=4, overlap=0.25, mode="gaussian")
    torch.manual_seed(0)
    with torch.no_grad():
        for name in maps:
            x = torch.from_numpy(
                density_to_network(density_input(BUNDLE / "sample" / f"{name}.mrc", 20.0, 16, 0.3, 0.5))
            )[None, None]
            for j in range(2):
                expected = network_to_subtomo(inferer(x, net))[0, 0]
                with mrcfile.open(out / f"{name}_sample_{j:02d}.mrc") as mrc:
                    assert mrc.voxel_size.x == pytest.approx(20.0) and mrc.data.dtype == np.float32
                    np.testing.assert_allclose(mrc.data, expected, rtol=0, atol=1e-5)
    assert (out / "montage.png").stat().st_size > 0
    before = {p.name: p.stat().st_mtime_ns for p in out.glob("*.mrc")}
    proc = _bundle_run("inference.json", "--output_dir", str(out), "--n_samples", "2", cwd=REPO)
    assert proc.returncode != 0 and "already exists" in proc.stderr + proc.stdout
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.mrc")} == before
    proc = _bundle_run("inference.json", "--output_dir", str(out), "--n_samples", "1", "--overwrite", "true", cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads((out / "synthesis.json").read_text())["n_samples"] == 1

    unc = tmp_path / "uncertainty"
    proc = _bundle_run("inference_uncertainty.json", "--output_dir", str(unc), "--mc_samples", "3")
    assert proc.returncode == 0, proc.stderr[-3000:]
    record = json.loads((unc / "uncertainty.json").read_text())
    assert record["k"] == 3 and record["fix_noise"] is False and record["std_source"].startswith("generator_noise")
    for entry in record["files"]:
        with mrcfile.open(unc / entry["std"]) as mrc:
            assert mrc.data.shape == (16, 16, 16) and mrc.voxel_size.x == pytest.approx(20.0)
            assert entry["mean_std"] == pytest.approx(float(mrc.data.mean())) and entry["mean_std"] > 0.1
        assert (unc / entry["mean"]).is_file() and (unc / entry["input"]).is_file()
    assert (unc / "uncertainty.png").is_file()


_STANDALONE = ["inference.json", "inference_uncertainty.json", "train.json", "train_classifier.json"]


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {
            "box": 24,
            "voxel_size": 10.0,
            "refine_channels": 4,
            "dropout": 0.3,
            "generator_kind": "cyclegan",
            "num_classes": 5,
        },
    ],
)
def test_repeated_definitions_are_identical(overrides):
    """Definitions repeated in the standalone configs (zoo style) are the same text and, with the same overrides,
    resolve to the same objects: the generator (``network_def`` and its settings), the classifier
    (``classifier_def``: train_classifier.json and evaluate.json over train.json), the data split and the
    sub-tomogram geometry."""
    raw = {c: json.loads((CONFIGS / c).read_text()) for c in _STANDALONE}
    raw["evaluate.json"] = json.loads((CONFIGS / "evaluate.json").read_text())
    shared = [
        "network_def",
        "generator_kind",
        "generator_channels",
        "n_res_blocks",
        "noise_channels",
        "decoder_noise",
        "input_noise_std",
        "dropout",
        "refine_channels",
        "max_residual",
        "defocus_um",
        "tilt_max_deg",
        "box",
        "voxel_size",
        "shape_sigma",
        "seed",
        "device",
        "bundle_root",
        "dataset_dir",
        "classifier_def",
        "num_classes",
        "classifier_channels",
        "classifier_dropout",
        "train_tomos",
        "val_tomos",
        "binning",
        "train_domains",
        "val_domains",
        "iso",
        "map_box",
        "model_path",
        "input_dir",
    ]
    for key in shared:
        values = {c: cfg[key] for c, cfg in raw.items() if key in cfg}
        assert len({json.dumps(v, sort_keys=True) for v in values.values()}) == 1, (key, values)
    assert sum("network_def" in cfg for cfg in raw.values()) == 4
    assert sum("classifier_def" in cfg for cfg in raw.values()) == 2

    def resolved(config, key):
        """The value of ``key`` with every reference resolved (a definition: its arguments' values)."""
        parser = _parser(config, **{k: v for k, v in overrides.items() if k in parser_keys(config)})
        value = parser[key]
        if isinstance(value, dict):
            return {k: v if k == "_target_" else parser.get_parsed_content(f"{key}#{k}") for k, v in value.items()}
        return parser.get_parsed_content(key)

    def parser_keys(config):
        files = [config] if isinstance(config, str) else config
        keys = set()
        for f in files:
            keys |= set(json.loads((CONFIGS / f).read_text()))
        return keys

    nets = [resolved(c, "network_def") for c in _STANDALONE]
    assert all(n == nets[0] for n in nets[1:]) and nets[0]["box"] == overrides.get("box", 16)
    clfs = [resolved(c, "classifier_def") for c in ("train_classifier.json", ["train.json", "evaluate.json"])]
    assert clfs[0] == clfs[1] and clfs[0]["num_classes"] == overrides.get("num_classes", 9)
    split = ["train_tomos", "val_tomos", "box", "binning", "shape_sigma", "voxel_size"]
    assert {k: resolved("train.json", k) for k in split} == {k: resolved("train_classifier.json", k) for k in split}
    shapes = {
        tuple(v.shape)
        for v in _parser("inference.json", **overrides).get_parsed_content("network_def").state_dict().values()
    }
    assert shapes == {
        tuple(v.shape)
        for v in _parser("train.json", **overrides).get_parsed_content("network_def").state_dict().values()
    }


# ----------------------------------------------------------------------------------------------
# issue 21: the inference configs' input contract, physical scale, memory, unique output names, records
# ----------------------------------------------------------------------------------------------
_INFERENCE = ["inference.json", "inference_uncertainty.json"]
_SAMPLE = BUNDLE / "sample" / "1bxn.mrc"


def _write_map(path: Path, data: np.ndarray | None = None, voxel_size: float | None = 10.0) -> Path:
    """``data`` (default: the embedded 1bxn sample, 32^3) as an MRC map with ``voxel_size`` (None: header cell 0)."""
    data = mrcfile.read(_SAMPLE) if data is None else data
    with mrcfile.new(path, overwrite=True) as mrc:
        mrc.set_data(np.asarray(data, dtype=np.float32))
        if voxel_size is not None:
            mrc.voxel_size = voxel_size
    return path


def _cli(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    """``emgan-monai`` (the package's entry point, as ``python -m emgan_monai.cli``) on CPU."""
    env = dict(os.environ, OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    return subprocess.run(
        [sys.executable, "-m", "emgan_monai.cli", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


def _failures(stderr: str, n: int, total: int) -> dict[str, str]:
    """The failure list ``report_failures`` printed: file name -> reason (one line each)."""
    lines = stderr.splitlines()
    head = f"{n} of {total} input(s) failed:"
    assert head in lines, stderr[-3000:]
    listed = lines[lines.index(head) + 1 :]
    assert len(listed) == n and "Traceback" not in stderr, stderr[-3000:]
    return {Path(line.strip().split(": ", 1)[0]).name: line.split(": ", 1)[1] for line in listed}


def test_density_map_input_contract():
    """``DensityMapInputd`` refuses, naming the file, what the configs do not accept, and estimates memory from the
    voxel sizes before anything is resampled."""
    import logging

    from monai.data import MetaTensor

    from emgan_monai.transforms import DensityMapInputd
    from emgan_monai.transforms.density_map_input import estimate_memory_bytes, resampled_shape

    def img(array, voxel=10.0, name="m.mrc", cell=None):
        t = MetaTensor(
            torch.as_tensor(np.asarray(array, np.float32))[None],
            affine=torch.diag(torch.tensor([voxel, voxel, voxel, 1.0], dtype=torch.float64)),
        )
        t.meta["filename_or_obj"] = name
        t.meta["mrc_cella"] = cell if cell is not None else tuple(voxel * s for s in np.shape(array))
        return {"image": t}

    check = DensityMapInputd("image", voxel_size=20.0, max_memory_gb=1.0)
    with pytest.raises(DataError, match=r"^--max_memory_gb must be a positive number, got 0$"):
        DensityMapInputd("image", voxel_size=20.0, max_memory_gb=0)
    with pytest.raises(DataError, match=r"^--input_voxel_size must be a positive number \(A\) or null, got -3$"):
        DensityMapInputd("image", voxel_size=20.0, input_voxel_size=-3)
    blob = np.zeros((8, 8, 8), np.float32)
    blob[2:6, 2:6, 2:6] = 1.0
    assert check(img(blob))["image"].shape == (1, 8, 8, 8)
    for array, problem in (
        (np.ones((8, 8, 8)), "the map is constant"),
        (-blob, "no positive density"),
        (np.where(blob > 0, np.nan, 0.0), "64 NaN/Inf voxel(s)"),
        (np.ones((8, 8)), "a 2D image of (8, 8) pixels; this bundle accepts 3D density maps"),
    ):
        with pytest.raises(DataError, match="^m.mrc: ") as err:
            check(img(array))
        assert problem in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(DataError, match="no voxel size .* set --input_voxel_size"):
        check(img(blob, voxel=1.0, cell=(0.0, 0.0, 0.0)))
    with pytest.raises(
        DataError,
        match=r"at 1 A/voxel \(the MRC header\) the map spans \(8, 8, 8\) voxels, "
        r"\(0, 0, 0\) at the model's 20 A: too small",
    ):
        check(img(blob, voxel=1.0))
    fixed = DensityMapInputd("image", voxel_size=20.0, input_voxel_size=40.0)(img(blob, cell=(0.0, 0.0, 0.0)))
    assert torch.allclose(fixed["image"].affine.diagonal()[:3], torch.tensor([40.0] * 3, dtype=torch.float64))
    # 400 A voxels: 32^3 -> 640^3 at 20 A, refused with the sizes (nothing the size of 640^3 is allocated)
    assert resampled_shape((32, 32, 32), 400.0, 20.0) == (640, 640, 640)
    with pytest.raises(DataError) as err:
        DensityMapInputd("image", voxel_size=20.0)(img(np.pad(blob, 12), voxel=400.0))
    need = estimate_memory_bytes(32**3, 640**3, 12) / 2**30
    assert str(err.value) == (
        f"m.mrc: at 400 A/voxel (the MRC header), resampling its (32, 32, 32) voxels to the "
        f"model's 20 A gives (640, 640, 640) voxels, estimated to need {need:.1f} GiB, more than "
        "--max_memory_gb 4; check the voxel size (--input_voxel_size), crop or bin the map, or "
        "raise --max_memory_gb"
    )
    # a 1 A header (often 'unknown') is used and logged with what it implies
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logger = logging.getLogger("emgan_monai.transforms.density_map_input")
    logger.addHandler(handler)
    try:
        check(img(np.pad(blob, 28), voxel=1.0))
    finally:
        logger.removeHandler(handler)
    assert len(records) == 1 and "says 1 A/voxel" in records[0].getMessage()
    assert "--input_voxel_size" in records[0].getMessage()


def test_unique_output_names():
    from emgan_monai.data.cryoet import unique_names

    assert unique_names(["/d/a.mrc", "/d/b.pdb"], ["a", "b"]) == ["a", "b"]
    assert unique_names(["/d/x.map", "/d/x.mrc", "/d/x.pdb"], ["x"] * 3) == ["x_map", "x_mrc", "x_pdb"]
    assert unique_names(["/d/x.mrc", "/d/x.pdb", "/d/x_mrc.mrc"], ["x", "x", "x_mrc"]) == ["x_mrc", "x_pdb", "x_mrc_2"]


@pytest.mark.parametrize("config", _INFERENCE)
def test_oversized_map_refused_before_allocation(config, tmp_path):
    """A density map whose header says 400 A/voxel would be resampled to 640^3 voxels at the model's 20 A (12 GiB
    and more): refused in seconds, before the resampling, with the voxel size, both shapes, the estimate and the keys
    to change; the other maps of the folder are still processed; the run exits with status 1."""
    import time

    maps = tmp_path / "maps"
    maps.mkdir()
    _write_map(maps / "a_good.mrc")
    _write_map(maps / "b_huge.mrc", voxel_size=400.0)
    start = time.monotonic()
    extra = ["--n_samples", "1"] if config == "inference.json" else ["--mc_samples", "2"]
    proc = _bundle_run(config, "--input_dir", str(maps), "--output_dir", str(tmp_path / "out"), *extra, cwd=tmp_path)
    assert time.monotonic() - start < 30 and proc.returncode == 1, proc.stderr[-3000:]
    reason = _failures(proc.stderr, 1, 2)["b_huge.mrc"]
    assert reason.startswith(
        "DataError: at 400 A/voxel (the MRC header), resampling its (32, 32, 32) voxels to the "
        "model's 20 A gives (640, 640, 640) voxels, estimated to need "
    )
    assert "more than --max_memory_gb 4; check the voxel size (--input_voxel_size)" in reason
    assert "MemoryError" not in proc.stdout + proc.stderr
    assert {p.name for p in (tmp_path / "out").glob("a_good_*.mrc")} and not list((tmp_path / "out").glob("b_*"))


@pytest.mark.parametrize("config", _INFERENCE)
def test_bad_maps_listed_good_ones_written(config, tmp_path):
    """A folder with a truncated MRC, a map without a voxel size and a constant map among good maps: every good map
    is written (with the model's voxel size in its MRC header), each bad one is listed once with its problem in one
    line, and the run exits with status 1 (both configs: the MC-dropout one used to stop at the first bad map)."""
    maps = tmp_path / "maps"
    maps.mkdir()
    _write_map(maps / "a_good.mrc")
    (maps / "b_truncated.mrc").write_bytes(_SAMPLE.read_bytes()[:5000])
    _write_map(maps / "c_no_voxel_size.mrc", voxel_size=None)
    _write_map(maps / "d_constant.mrc", np.full((16, 16, 16), 3.0))
    _write_map(maps / "e_good.map", mrcfile.read(BUNDLE / "sample" / "3j9i.mrc"))
    out = tmp_path / "out"
    extra = ["--n_samples", "1"] if config == "inference.json" else ["--mc_samples", "2"]
    proc = _bundle_run(config, "--input_dir", str(maps), "--output_dir", str(out), *extra, cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr[-3000:]
    reasons = _failures(proc.stderr, 3, 5)
    assert (
        reasons["b_truncated.mrc"].startswith("ImageReadError:") and "truncated MRC file" in reasons["b_truncated.mrc"]
    )
    assert reasons["c_no_voxel_size.mrc"] == (
        "DataError: the MRC header has no voxel size (cell size (0.0, 0.0, "
        "0.0)); set --input_voxel_size to the map's voxel size in A"
    )
    assert reasons["d_constant.mrc"].startswith("DataError: the map is constant (every voxel 3)")
    written = sorted(p.name for p in out.glob("*.mrc"))
    outputs = ["sample_00"] if config == "inference.json" else ["mean", "std"]
    assert written == sorted(f"{m}_{o}.mrc" for m in ("a_good", "e_good") for o in ["input", *outputs]), written
    for path in out.glob("*.mrc"):
        with mrcfile.open(path) as mrc:
            assert mrc.voxel_size.x == pytest.approx(20.0) and mrc.data.shape == (16, 16, 16)
    record = json.loads((out / ("synthesis.json" if config == "inference.json" else "uncertainty.json")).read_text())
    assert sorted(Path(f["file"]).name for f in record["failed"]) == [
        "b_truncated.mrc",
        "c_no_voxel_size.mrc",
        "d_constant.mrc",
    ]


def test_input_voxel_size_overrides_a_missing_header(tmp_path):
    """``--input_voxel_size`` makes a map without a voxel size usable: the same outputs as the map with its voxel size
    in the header, the outputs at the model's 20 A."""
    maps, ref = tmp_path / "maps", tmp_path / "ref"
    maps.mkdir()
    ref.mkdir()
    _write_map(maps / "m.mrc", voxel_size=None)
    _write_map(ref / "m.mrc", voxel_size=10.0)
    for folder, extra in ((maps, ["--input_voxel_size", "10"]), (ref, [])):
        proc = _cli(
            "run",
            "cryoet_gan",
            "inference",
            "--input_dir",
            str(folder),
            "--output_dir",
            str(folder / "out"),
            "--n_samples",
            "1",
            "--device",
            "$torch.device('cpu')",
            *extra,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
    for name in ("m_input.mrc", "m_sample_00.mrc"):
        with mrcfile.open(maps / "out" / name) as a, mrcfile.open(ref / "out" / name) as b:
            assert a.voxel_size.x == pytest.approx(20.0) and np.array_equal(a.data, b.data)
    assert json.loads((maps / "out" / "synthesis.json").read_text())["input_voxel_size_A"] == 10


@pytest.mark.needs_data
@pytest.mark.parametrize("config", ["inference", "inference_uncertainty"])
def test_same_stem_inputs_both_get_results(config, tmp_path):
    """``x.mrc`` (a density map) and ``x.pdb`` (the real 1BXN atomic model) in one folder: both are processed, their
    outputs named after the full file names (``x_mrc_*``, ``x_pdb_*``), both listed in the record; exit 0."""
    from conftest import require_data

    pdb = require_data("cryoet", "pdb", "1bxn.pdb")
    maps = tmp_path / "maps"
    maps.mkdir()
    _write_map(maps / "x.mrc")
    (maps / "x.pdb").write_bytes(pdb.read_bytes())
    out = tmp_path / "out"
    extra = ["--n_samples", "1"] if config == "inference" else ["--mc_samples", "2"]
    proc = _cli(
        "run",
        "cryoet_gan",
        config,
        "--input_dir",
        str(maps),
        "--output_dir",
        str(out),
        "--device",
        "$torch.device('cpu')",
        *extra,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    outputs = ["sample_00"] if config == "inference" else ["mean", "std"]
    assert sorted(p.name for p in out.glob("*.mrc")) == sorted(
        f"x_{s}_{o}.mrc" for s in ("mrc", "pdb") for o in ["input", *outputs]
    )
    record = json.loads((out / ("synthesis.json" if config == "inference" else "uncertainty.json")).read_text())
    assert [f["map"] for f in record["files"]] == ["x_mrc", "x_pdb"]
    with mrcfile.open(out / "x_mrc_input.mrc") as a, mrcfile.open(out / "x_pdb_input.mrc") as b:
        assert not np.array_equal(a.data, b.data)  # two different inputs, two results


def test_stale_records_do_not_block_a_run(tmp_path):
    """A ``synthesis.json`` / ``montage.png`` left by an earlier run in a fresh output folder, or the whole earlier
    run with ``--overwrite true``, does not block the next run: the record is rewritten for the run."""
    maps = tmp_path / "maps"
    maps.mkdir()
    _write_map(maps / "m.mrc")
    out = tmp_path / "out"
    out.mkdir()
    (out / "synthesis.json").write_text('{"stale": true}')
    (out / "montage.png").write_bytes(b"stale")
    args = [
        "run",
        "cryoet_gan",
        "inference",
        "--input_dir",
        str(maps),
        "--output_dir",
        str(out),
        "--device",
        "$torch.device('cpu')",
    ]
    proc = _cli(*args, "--n_samples", "2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    record = json.loads((out / "synthesis.json").read_text())
    assert "stale" not in record and record["n_samples"] == 2 and record["files"][0]["map"] == "m"
    proc = _cli(*args, "--n_samples", "1", "--overwrite", "true")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads((out / "synthesis.json").read_text())["n_samples"] == 1
    proc = _cli(*args, "--n_samples", "1")
    assert proc.returncode == 2 and proc.stderr.strip().splitlines()[-1] == (
        f"error: {out / 'm_input.mrc'} already exists; choose another output_dir or pass --overwrite true to replace it"
    )


def test_inference_keys_are_documented(capsys):
    """``emgan-monai keys cryoet_gan <config>`` gives every user-facing key of both inference configs a one-line
    description from the config (``_comment_<key>``), and the bundle README lists them."""
    from emgan_monai.cli import main, user_keys

    readme = (BUNDLE / "docs" / "README.md").read_text()
    for config in _INFERENCE:
        keys = user_keys([CONFIGS / config])
        assert {
            "input_dir",
            "output_dir",
            "overwrite",
            "seed",
            "max_memory_gb",
            "input_voxel_size",
            "tile_large_maps",
            "device",
        } <= set(keys)
        assert not [k for k, (_, doc) in keys.items() if not doc], config
        assert not [k for k in keys if f"`{k}`" not in readme], config
        assert main(["keys", "cryoet_gan", config[:-5]]) == 0
        shown = capsys.readouterr().out
        assert "--max_memory_gb" in shown and "before allocating anything" in shown
    assert "mc_samples" in user_keys([CONFIGS / "inference_uncertainty.json"])
    assert "n_samples" in user_keys([CONFIGS / "inference.json"])


def test_atomic_model_with_a_stray_atom_refused_before_building(tmp_path):
    """A PDB model with one atom 9,000 A away would make a 900^3-voxel map at 20 A: the reader refuses it before the
    grid is allocated, naming the file, the shape and the key."""
    from monai.transforms import LoadImage

    from emgan_monai.io import AtomicModelReader, ImageReadError

    line = "ATOM  {:5d}  CA  ALA A{:4d}    {:8.3f}{:8.3f}{:8.3f}  1.00  0.00           C"
    atoms = [line.format(i + 1, i + 1, 3.8 * i, 0.0, 0.0) for i in range(10)] + [line.format(11, 11, 9000.0, 0.0, 0.0)]
    pdb = tmp_path / "stray.pdb"
    pdb.write_text("\n".join(atoms) + "\nEND\n")
    load = LoadImage(reader=AtomicModelReader(voxel_size=20.0, max_memory_gb=4), image_only=True)
    with pytest.raises(
        ImageReadError,
        match=r"stray.pdb.*the model spans \(\d{3}, \d{3}, \d{3}\) voxels at 20 A .*"
        r"--max_memory_gb",
    ):
        load(str(pdb))
    good = tmp_path / "good.pdb"
    good.write_text("\n".join(atoms[:10]) + "\nEND\n")
    assert load(str(good)).ndim == 3
