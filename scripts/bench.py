#!/usr/bin/env python
"""One-command performance benchmark of ``emgan_monai`` (issue 7).

Measures, side by side in one run:

1. ``train``: seconds per training iteration of our engines (``PairedGANTrainer``, ``UnconditionalGANTrainer``,
   ``CycleGANTrainer``, driven by ``engine.run()`` with ``epoch_length``) against a plain hand-written PyTorch loop
   (one discriminator step, one generator step, Adam) on identical networks, data and optimiser settings;
   ``ours / plain``.
2. ``fast``: our engine with the CPU/CUDA fast path (fused/foreach Adam, ``channels_last`` memory format,
   pre-collated cached tensors, input checks off, ``zero_grad(set_to_none=True)``; AMP on CUDA only);
   ``fast / plain`` (< 1 is faster).
3. ``inference``: generator throughput (items/s) and achieved FLOP/s (FLOPs counted with
   :class:`torch.utils.flop_counter.FlopCounterMode`) as a fraction of the fp32 matrix-multiply rate measured in the
   same run.
4. ``tiled``: sliding-window inference (:class:`monai.inferers.SlidingWindowInferer`) of a large EM image through the
   stage-2 generator and of a tomogram through the cryo-ET generator, each in its own subprocess: wall time and peak
   resident memory (the child's ``ru_maxrss``).
5. ``data``: items/s of each bundle's training dataset, instantiated from ``configs/train.json`` with :class:`monai.bundle.ConfigParser` on the real data
   (``$EMGAN_DATA`` or ``../shared/data``); skipped with a note when the data are absent (or, with ``--quick``, for
   the confocal pairs that take a minute to prepare). Any error
   while building or reading a dataset propagates: the benchmark fails rather than reporting a skipped row.

Usage::

    python scripts/bench.py --threads 2 --iterations 3 --repeats 2 --out bench.json [--full] [--quick] [--device cuda]

Prints a markdown table and writes the JSON to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from emgan_monai.engines import AdversarialSettings, GeneratorLoss  # noqa: E402
from emgan_monai.engines.cycle import CycleGANTrainer  # noqa: E402
from emgan_monai.engines.paired import PairedGANTrainer  # noqa: E402
from emgan_monai.engines.unconditional import UnconditionalGANTrainer  # noqa: E402
from emgan_monai.networks.cyclegan3d import CycleGANGenerator, SpectralNormCritic  # noqa: E402
from emgan_monai.networks.discriminators import build_discriminator  # noqa: E402
from emgan_monai.networks.mask_generator import NoiseToMaskGenerator  # noqa: E402
from emgan_monai.networks.pix2pix_unet import Pix2PixUNet  # noqa: E402

LR, BETAS = 2e-4, (0.5, 0.999)


# ---------------------------------------------------------------------------------------------------- cases
def _cases(quick: bool, full: bool) -> list[dict[str, Any]]:
    """Benchmark cases: networks and batch shapes. ``quick`` shrinks every size (what the test uses)."""
    s256, s512, c3 = (64, 64, 16) if quick else (256, 512, 32)
    cases: list[dict[str, Any]] = [
        {
            "name": f"pix2pix {s256} c16 skip_patch",
            "kind": "paired",
            "size": s256,
            "g_channels": 16,
            "num_downs": int(math.log2(s256)),
            "d_kind": "skip_patch",
            "d_channels": 16 if quick else 64,
        },
        {
            "name": f"pix2pix {s256} c64 patch70 (reference)",
            "kind": "paired",
            "size": s256,
            "g_channels": 8 if quick else 64,
            "num_downs": int(math.log2(s256)),
            "d_kind": "patch70",
            "d_channels": 8 if quick else 64,
        },
        {
            "name": f"noise->mask {s512}",
            "kind": "mask",
            "size": s512,
            "channels": (16, 16, 8, 8, 8) if quick else (256, 256, 128, 64, 32),
            "d_channels": 16 if quick else 64,
        },
        {"name": f"cyclegan3d {c3}^3", "kind": "cycle", "size": c3, "g_channels": 8, "critic_channels": (16, 32, 64)},
    ]
    if not quick:
        cases.insert(
            2,
            {
                "name": "pix2pix 512 c16 skip_patch",
                "kind": "paired",
                "size": 512,
                "g_channels": 16,
                "num_downs": 9,
                "d_kind": "skip_patch",
                "d_channels": 64,
            },
        )
    if full and not quick:
        cases.append(
            {"name": "cyclegan3d 64^3", "kind": "cycle", "size": 64, "g_channels": 8, "critic_channels": (16, 32, 64)}
        )
    return cases


def _build(case: dict[str, Any], device: torch.device, seed: int = 0) -> dict[str, Any]:
    """Fresh, identically initialised networks and one pre-collated batch for ``case``."""
    torch.manual_seed(seed)
    s = case["size"]
    if case["kind"] == "paired":
        g = Pix2PixUNet(2, in_channels=3, out_channels=1, channels=case["g_channels"], num_downs=case["num_downs"])
        d = build_discriminator(case["d_kind"], 2, 4, channels=case["d_channels"])
        batch = {"image": torch.rand(1, 3, s, s), "label": torch.rand(1, 1, s, s)}
        nets = {"g": g, "d": d}
    elif case["kind"] == "mask":
        g = NoiseToMaskGenerator(2, latent_channels=8, out_channels=3, channels=case["channels"])
        d = build_discriminator("skip_patch", 2, 3, channels=case["d_channels"])
        batch = {"label": torch.softmax(torch.randn(1, 3, s, s), dim=1)}
        nets = {"g": g, "d": d}
    else:
        kw = {"spatial_dims": 3, "in_channels": 1, "out_channels": 1, "channels": case["g_channels"]}
        nets = {
            "g_ab": CycleGANGenerator(**kw),
            "g_ba": CycleGANGenerator(**kw),
            "d_a": SpectralNormCritic(3, 1, channels=case["critic_channels"]),
            "d_b": SpectralNormCritic(3, 1, channels=case["critic_channels"]),
        }
        batch = {"image_a": torch.rand(1, 1, s, s, s), "image_b": torch.rand(1, 1, s, s, s)}
    return {"nets": {k: v.to(device) for k, v in nets.items()}, "batch": {k: v.to(device) for k, v in batch.items()}}


def _latent_shape(case: dict[str, Any]) -> tuple[int, int, int]:
    return (8, case["size"] // 64, case["size"] // 64) if case["size"] >= 64 else (8, 1, 1)


def _adam(params, fast: bool, device: torch.device) -> torch.optim.Adam:
    """Adam as in pix2pix; the fast path uses the fused kernel (foreach where fused is unavailable)."""
    if not fast:
        return torch.optim.Adam(params, lr=LR, betas=BETAS, foreach=False)
    try:
        return torch.optim.Adam(params, lr=LR, betas=BETAS, fused=True)
    except (RuntimeError, ValueError):
        return torch.optim.Adam(params, lr=LR, betas=BETAS, foreach=True)


def _to_fast_format(x: torch.Tensor) -> torch.Tensor:
    if x.ndim == 4:
        return x.contiguous(memory_format=torch.channels_last)
    if x.ndim == 5:
        return x.contiguous(memory_format=torch.channels_last_3d)
    return x


# ---------------------------------------------------------------------------------------------------- timing
def _time_engine(
    case: dict[str, Any], device: torch.device, iters: int, warmup: int, fast: bool, channels_last: bool = False
) -> float:
    """Median seconds per iteration of our engine (``engine.run()`` over ``warmup + iters`` iterations).

    ``fast``: fused Adam, ``zero_grad(set_to_none=True)``, input/loss finiteness checks off, AMP on CUDA;
    ``channels_last`` additionally converts networks and batch to channels-last memory format.
    """
    built = _build(case, device)
    nets, batch = built["nets"], built["batch"]
    if fast and channels_last:
        fmt = torch.channels_last_3d if case["kind"] == "cycle" else torch.channels_last
        for net in nets.values():
            net.to(memory_format=fmt)
        batch = {k: _to_fast_format(v) for k, v in batch.items()}
    loader = [batch]  # pre-collated, cached batch: the engine cycles through it
    g_params = [p for k, n in nets.items() if k.startswith("g") for p in n.parameters()]
    d_params = [p for k, n in nets.items() if k.startswith("d") for p in n.parameters()]
    common = {
        "device": device,
        "max_epochs": warmup + iters,
        "train_data_loader": loader,
        "g_optimizer": _adam(g_params, fast, device),
        "d_optimizer": _adam(d_params, fast, device),
        "epoch_length": 1,
        "amp": fast and device.type == "cuda",
    }
    if case["kind"] == "paired":
        engine = PairedGANTrainer(g_network=nets["g"], d_network=nets["d"], **common)
    elif case["kind"] == "mask":
        engine = UnconditionalGANTrainer(
            g_network=nets["g"], d_network=nets["d"], latent_shape=_latent_shape(case), **common
        )
    else:
        engine = CycleGANTrainer(
            generators={"g_ab": nets["g_ab"], "g_ba": nets["g_ba"]},
            discriminators={"d_a": nets["d_a"], "d_b": nets["d_b"]},
            generator_loss=GeneratorLoss(lambda_identity=0.0),
            adversarial=AdversarialSettings(loss="bce", pool_size=0),
            **common,
        )
    if fast:  # engine attributes, not constructor arguments
        engine.check_inputs, engine.stop_on_nonfinite, engine.optim_set_to_none = False, False, True
    stamps: list[float] = []
    from ignite.engine import Events

    engine.add_event_handler(Events.ITERATION_COMPLETED, lambda e: (_sync(device), stamps.append(time.perf_counter())))
    start = [0.0]
    engine.add_event_handler(Events.STARTED, lambda e: start.__setitem__(0, time.perf_counter()))
    engine.run()
    per_iter = [b - a for a, b in zip([start[0], *stamps[:-1]], stamps)]
    return statistics.median(per_iter[warmup:])


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _set_requires_grad(nets: list[nn.Module], flag: bool) -> None:
    for net in nets:
        for p in net.parameters():
            p.requires_grad_(flag)


def _logits(out: Any) -> torch.Tensor:
    return out[-1] if isinstance(out, (list, tuple)) else out


def _time_plain(case: dict[str, Any], device: torch.device, iters: int, warmup: int) -> float:
    """Median seconds per iteration of the minimal hand-written loop: one D step, one G step, Adam, BCE (+ L1 / cycle)."""
    built = _build(case, device)
    nets, batch = built["nets"], built["batch"]
    bce, l1 = nn.BCEWithLogitsLoss(), nn.L1Loss()

    def adv(logits: torch.Tensor, real: bool) -> torch.Tensor:
        return bce(logits, torch.full_like(logits, 1.0 if real else 0.0))

    g_nets = [n for k, n in nets.items() if k.startswith("g")]
    d_nets = [n for k, n in nets.items() if k.startswith("d")]
    opt_g = _adam([p for n in g_nets for p in n.parameters()], False, device)
    opt_d = _adam([p for n in d_nets for p in n.parameters()], False, device)
    for n in nets.values():
        n.train()

    def step() -> None:
        if case["kind"] == "paired":
            g, d = nets["g"], nets["d"]
            x, y = batch["image"], batch["label"]
            fake = g(x)
            opt_d.zero_grad()
            fake_in = torch.cat([x, fake.detach()], 1)
            loss_d = 0.5 * (adv(_logits(d(torch.cat([x, y], 1))), True) + adv(_logits(d(fake_in)), False))
            loss_d.backward()
            opt_d.step()
            _set_requires_grad([d], False)
            opt_g.zero_grad()
            loss_g = adv(_logits(d(torch.cat([x, fake], 1))), True) + 100.0 * l1(fake, y)
            loss_g.backward()
            opt_g.step()
            _set_requires_grad([d], True)
        elif case["kind"] == "mask":
            g, d = nets["g"], nets["d"]
            real = batch["label"]
            fake = g(torch.randn(real.shape[0], *_latent_shape(case), device=device))
            opt_d.zero_grad()
            loss_d = 0.5 * (adv(_logits(d(real)), True) + adv(_logits(d(fake.detach())), False))
            loss_d.backward()
            opt_d.step()
            _set_requires_grad([d], False)
            opt_g.zero_grad()
            loss_g = adv(_logits(d(fake)), True)
            loss_g.backward()
            opt_g.step()
            _set_requires_grad([d], True)
        else:
            a, b = batch["image_a"], batch["image_b"]
            fake_b, fake_a = nets["g_ab"](a), nets["g_ba"](b)
            rec_a, rec_b = nets["g_ba"](fake_b), nets["g_ab"](fake_a)
            opt_d.zero_grad()
            loss_d = 0.5 * (adv(nets["d_a"](a), True) + adv(nets["d_a"](fake_a.detach()), False)) + 0.5 * (
                adv(nets["d_b"](b), True) + adv(nets["d_b"](fake_b.detach()), False)
            )
            loss_d.backward()
            opt_d.step()
            _set_requires_grad(d_nets, False)
            opt_g.zero_grad()
            loss_g = (
                adv(nets["d_b"](fake_b), True) + adv(nets["d_a"](fake_a), True) + 10.0 * (l1(rec_a, a) + l1(rec_b, b))
            )
            loss_g.backward()
            opt_g.step()
            _set_requires_grad(d_nets, True)

    for _ in range(warmup):
        step()
    per_iter = []
    for _ in range(iters):
        _sync(device)
        t0 = time.perf_counter()
        step()
        _sync(device)
        per_iter.append(time.perf_counter() - t0)
    return statistics.median(per_iter)


# ---------------------------------------------------------------------------------------------------- inference
def matmul_rate(device: torch.device, n: int = 1024, reps: int = 10) -> float:
    """Measured fp32 matrix-multiply rate in FLOP/s (``2 n^3`` per ``n x n`` product)."""
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    for _ in range(2):
        a @ b
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(reps):
        a @ b
    _sync(device)
    return 2.0 * n**3 * reps / (time.perf_counter() - t0)


def _count_flops(fn: Callable[[], Any]) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def bench_inference(case: dict[str, Any], device: torch.device, iters: int, mm_rate: float) -> dict[str, float]:
    """Generator forward throughput (batch 1, ``eval``, ``no_grad``) and FLOP/s relative to ``mm_rate``."""
    built = _build(case, device)
    g = built["nets"]["g"] if "g" in built["nets"] else built["nets"]["g_ab"]
    g.eval()
    if case["kind"] == "paired":
        x = built["batch"]["image"]
    elif case["kind"] == "mask":
        x = torch.randn(1, *_latent_shape(case), device=device)
    else:
        x = built["batch"]["image_a"]
    with torch.inference_mode():
        flops = _count_flops(lambda: g(x))
        g(x)
        _sync(device)
        t0 = time.perf_counter()
        for _ in range(iters):
            g(x)
        _sync(device)
        sec = (time.perf_counter() - t0) / iters
    return {
        "seconds_per_item": sec,
        "items_per_s": 1.0 / sec,
        "gflop_per_item": flops / 1e9,
        "gflop_per_s": flops / sec / 1e9,
        "fraction_of_matmul": flops / sec / mm_rate,
    }


# ---------------------------------------------------------------------------------------------------- tiled
def _tiled_child(kind: str, size: int, roi: int, overlap: float, sw_batch: int) -> None:
    """Run one tiled inference in this (child) process and print a JSON line with wall time and peak RSS."""
    from monai.inferers import SlidingWindowInferer

    torch.manual_seed(0)
    if kind == "em2d":
        net = Pix2PixUNet(2, in_channels=3, out_channels=1, channels=16, num_downs=int(math.log2(roi)))
        x = torch.rand(1, 3, size, size)
        shape = (size, size)
    else:
        net = CycleGANGenerator(3, 1, 1, channels=8)
        x = torch.rand(1, 1, size, size, size)
        shape = (size,) * 3
    net.eval()
    inferer = SlidingWindowInferer(
        roi_size=(roi,) * len(shape), sw_batch_size=sw_batch, overlap=overlap, mode="gaussian", progress=False
    )
    t0 = time.perf_counter()
    with torch.inference_mode():
        y = inferer(x, net)
    wall = time.perf_counter() - t0
    if tuple(y.shape[2:]) != shape or not bool(torch.isfinite(y).all()):
        raise RuntimeError(f"tiled inference returned shape {tuple(y.shape)} or non-finite values")
    print(
        json.dumps(
            {
                "wall_s": wall,
                "peak_rss_mib": _peak_rss_kib() / 1024.0,
                "input_mib": x.numel() * 4 / 2**20,
                "ru_maxrss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
            }
        )
    )


def _peak_rss_kib() -> float:
    """Peak resident memory of this process in KiB.

    ``VmHWM`` of ``/proc/self/status`` (Linux) belongs to the process image since ``exec``; ``ru_maxrss`` (the
    fallback) is inherited across ``fork``/``exec`` on Linux and so can report the parent's peak instead.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return float(line.split()[1])
    except OSError:
        pass
    return float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def bench_tiled(kind: str, size: int, roi: int, overlap: float, threads: int, sw_batch: int) -> dict[str, Any]:
    """Run :func:`_tiled_child` in a subprocess; peak RSS from the child (``VmHWM``) and ``RUSAGE_CHILDREN``."""
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--_tiled",
        kind,
        "--_size",
        str(size),
        "--_roi",
        str(roi),
        "--_overlap",
        str(overlap),
        "--_sw_batch",
        str(sw_batch),
        "--threads",
        str(threads),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"tiled child {kind} failed:\n{proc.stderr[-2000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out["children_max_rss_mib"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0
    out.update(kind=kind, size=size, roi=roi, overlap=overlap, sw_batch_size=sw_batch)
    return out


# ---------------------------------------------------------------------------------------------------- data
DATA_CASES = {
    # bundle -> (data subfolder, overrides keeping the pipeline real but the set small)
    "drosophila_skip_patch": ("drosophila_vnc", {"n_train": 4, "n_val": 1}),
    "confocal_enhance": ("fluorescence", {"n_procedural_train": 1, "n_na_train": 1}),
    "cryoet_gan": ("cryoet", {"train_tomos": [1]}),
}


#: the only reason, besides absent data, for which a ``data`` row is skipped
QUICK_SKIP = "--quick: pair preparation (PSF + degradation of the stack) takes ~1 min"
QUICK_SKIPPED = ("confocal_enhance",)


def bench_data(items: int, quick: bool) -> dict[str, Any]:
    """Items/s of each bundle's ``train#dataset`` (built from ``configs/train.json``) over ``items`` fetches."""
    from monai.bundle import ConfigParser

    from emgan_monai.bundle_utils import data_dir

    results: dict[str, Any] = {}
    for bundle, (sub, overrides) in DATA_CASES.items():
        folder = Path(data_dir(sub))
        if not folder.is_dir() or not any(folder.iterdir()):
            results[bundle] = {"skipped": f"no data at {folder}"}
            continue
        parser = ConfigParser()
        parser.read_config(str(REPO / "bundles" / bundle / "configs" / "train.json"))
        parser.update(overrides)
        if quick and bundle == "drosophila_skip_patch":
            parser.update({"resolution": 64})
        if quick and bundle in QUICK_SKIPPED:
            results[bundle] = {"skipped": QUICK_SKIP}
            continue
        scratch = None
        if bundle == "confocal_enhance":  # keep the generated pairs out of the bundle folder, removed afterwards
            import tempfile

            scratch = tempfile.TemporaryDirectory(prefix="bench_pairs_")
            parser.update({"data_cache_dir": scratch.name})
        try:  # an error in a bundle's data pipeline is a failure of the benchmark, not a skipped row
            t0 = time.perf_counter()
            dataset = parser.get_parsed_content("train#dataset")
            build_s = time.perf_counter() - t0
            n = len(dataset)
            t0 = time.perf_counter()
            for i in range(items):
                dataset[i % n]
            sec = time.perf_counter() - t0
        finally:
            if scratch is not None:
                scratch.cleanup()
        results[bundle] = {
            "items_per_s": items / sec,
            "build_s": build_s,
            "n_items": n,
            "fetched": items,
            "overrides": overrides,
        }
    return results


# ---------------------------------------------------------------------------------------------------- report
def _fmt(x: float, nd: int = 3) -> str:
    return f"{x:.{nd}f}"


def markdown(res: dict[str, Any]) -> str:
    lines = [
        f"Machine: {res['meta']['machine']}; threads {res['meta']['threads']}; device {res['meta']['device']}; "
        f"fp32 matmul {res['meta']['matmul_gflop_per_s']:.1f} GFLOP/s; iterations {res['meta']['iterations']} "
        f"(+{res['meta']['warmup']} warm-up), median per round, best of {res['meta'].get('repeats', 1)} "
        "interleaved round(s)",
        "",
        "| case | plain s/it | ours s/it | ours/plain | fast s/it | fast/plain |",
        "|---|---|---|---|---|---|",
    ]
    for r in res["train"]:
        lines.append(
            f"| {r['name']} | {_fmt(r['plain_s'])} | {_fmt(r['ours_s'])} | {_fmt(r['ours_over_plain'])} | "
            f"{_fmt(r['fast_s'])} | {_fmt(r['fast_over_plain'])} |"
        )
    lines += ["", "| generator | items/s | GFLOP/item | GFLOP/s | fraction of matmul |", "|---|---|---|---|---|"]
    for r in res["inference"]:
        lines.append(
            f"| {r['name']} | {_fmt(r['items_per_s'], 2)} | {_fmt(r['gflop_per_item'], 2)} | "
            f"{_fmt(r['gflop_per_s'], 1)} | {_fmt(r['fraction_of_matmul'], 2)} |"
        )
    lines += ["", "| tiled inference | size | roi | overlap | wall s | peak RSS MiB |", "|---|---|---|---|---|---|"]
    for r in res["tiled"]:
        dims = "^2" if r["kind"] == "em2d" else "^3"
        lines.append(
            f"| {r['kind']} | {r['size']}{dims} | {r['roi']} | {r['overlap']} | {_fmt(r['wall_s'], 1)} | "
            f"{_fmt(r['peak_rss_mib'], 0)} |"
        )
    lines += ["", "| bundle train dataset | items/s | note |", "|---|---|---|"]
    for name, r in res["data"].items():
        if "items_per_s" in r:
            lines.append(
                f"| {name} | {_fmt(r['items_per_s'], 2)} | {r['n_items']} items, overrides {r['overrides']}, "
                f"built in {_fmt(r['build_s'], 1)} s |"
            )
        else:
            lines.append(f"| {name} | - | skipped: {r['skipped']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny sizes and few iterations (the test uses it)")
    p.add_argument("--full", action="store_true", help="also the 64^3 CycleGAN case")
    p.add_argument("--iterations", type=int, default=None, help="timed iterations per case (default 5, quick 2)")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument(
        "--repeats", type=int, default=1, help="interleaved rounds of plain/ours/fast per case; the best round is kept"
    )
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", default="bench.json")
    p.add_argument("--tiled-2d", type=int, default=None, help="EM image side (default 4096, quick 256)")
    p.add_argument("--tiled-3d", type=int, default=None, help="tomogram side (default 256, quick 32)")
    p.add_argument("--roi-3d", type=int, default=64)
    p.add_argument("--overlap", type=float, default=0.25)
    p.add_argument("--skip-data", action="store_true")
    p.add_argument(
        "--channels-last",
        action="store_true",
        help="fast path also uses channels_last (slower on CPU with instance norm, see PERFORMANCE.md)",
    )
    for hidden in ("--_tiled", "--_size", "--_roi", "--_overlap", "--_sw_batch"):
        p.add_argument(hidden, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args._tiled:
        _tiled_child(args._tiled, int(args._size), int(args._roi), float(args._overlap), int(args._sw_batch))
        return 0
    if args.iterations is not None and args.iterations < 1:
        raise ValueError(f"--iterations must be >= 1, got {args.iterations}")
    if args.repeats < 1:
        raise ValueError(f"--repeats must be >= 1, got {args.repeats}")
    if args.warmup < 1:
        raise ValueError(f"--warmup must be >= 1, got {args.warmup}")
    device = torch.device(args.device)
    iters = args.iterations or (2 if args.quick else 5)
    t_start = time.perf_counter()
    mm = matmul_rate(device, n=512 if args.quick else 1024)
    res: dict[str, Any] = {
        "meta": {
            "machine": f"{platform.machine()} {os.cpu_count()} cpus, torch {torch.__version__}",
            "threads": torch.get_num_threads(),
            "device": str(device),
            "iterations": iters,
            "warmup": args.warmup,
            "repeats": args.repeats,
            "matmul_gflop_per_s": mm / 1e9,
            "quick": args.quick,
            "command": " ".join(sys.argv),
        }
    }
    # tiled inference first, while this process is small: Linux children inherit the parent's ru_maxrss
    threads = torch.get_num_threads()
    size2d = args.tiled_2d or (256 if args.quick else 4096)
    size3d = args.tiled_3d or (32 if args.quick else 256)
    roi2d = 64 if args.quick else 256
    roi3d = 16 if args.quick else args.roi_3d
    res["tiled"] = [
        bench_tiled("em2d", size2d, roi2d, args.overlap, threads, 1),
        bench_tiled("cryoet3d", size3d, roi3d, args.overlap, threads, 1),
    ]
    res["train"], res["inference"] = [], []
    for case in _cases(args.quick, args.full):
        # interleaved rounds, best round per variant: robust against other jobs on a shared machine
        plain = ours = fast = math.inf
        for _ in range(args.repeats):
            plain = min(plain, _time_plain(case, device, iters, args.warmup))
            ours = min(ours, _time_engine(case, device, iters, args.warmup, fast=False))
            fast = min(
                fast, _time_engine(case, device, iters, args.warmup, fast=True, channels_last=args.channels_last)
            )
        res["train"].append(
            {
                "name": case["name"],
                "plain_s": plain,
                "ours_s": ours,
                "fast_s": fast,
                "ours_over_plain": ours / plain,
                "fast_over_plain": fast / plain,
            }
        )
        res["inference"].append({"name": case["name"], **bench_inference(case, device, iters, mm)})
        print(f"[bench] {case['name']}: plain {plain:.3f} ours {ours:.3f} fast {fast:.3f} s/it", file=sys.stderr)
    res["data"] = {} if args.skip_data else bench_data(items=4 if args.quick else 16, quick=args.quick)
    res["meta"]["total_s"] = time.perf_counter() - t_start
    table = markdown(res)
    print(table)
    Path(args.out).write_text(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
