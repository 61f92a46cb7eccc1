"""``scripts/bench.py --quick``: runs end to end on tiny sizes and writes every section with finite positive numbers.

No timing assertions: speed lives in the benchmark itself (``docs/PERFORMANCE.md``).
"""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _positive(value: object, where: str) -> None:
    assert isinstance(value, (int, float)) and not isinstance(value, bool), f"{where}: {value!r} is not a number"
    assert math.isfinite(value) and value > 0, f"{where}: {value!r} is not finite and positive"


@pytest.mark.needs_data
def test_bench_quick(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "scripts" / "bench.py"),
            "--quick",
            "--iterations",
            "1",
            "--threads",
            "1",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "| case | plain s/it | ours s/it |" in proc.stdout  # the markdown table is printed
    res = json.loads(out.read_text())
    assert set(res) >= {"meta", "train", "inference", "tiled", "data"}
    _positive(res["meta"]["matmul_gflop_per_s"], "meta.matmul_gflop_per_s")

    kinds = {r["name"].split()[0] for r in res["train"]}
    assert kinds == {"pix2pix", "noise->mask", "cyclegan3d"}, kinds
    for row in res["train"]:
        for key in ("plain_s", "ours_s", "fast_s", "ours_over_plain", "fast_over_plain"):
            _positive(row[key], f"train[{row['name']}].{key}")
    assert len(res["inference"]) == len(res["train"])
    for row in res["inference"]:
        for key in ("seconds_per_item", "items_per_s", "gflop_per_item", "gflop_per_s", "fraction_of_matmul"):
            _positive(row[key], f"inference[{row['name']}].{key}")

    assert [r["kind"] for r in res["tiled"]] == ["em2d", "cryoet3d"]
    for row in res["tiled"]:
        for key in ("wall_s", "peak_rss_mib", "children_max_rss_mib", "input_mib"):
            _positive(row[key], f"tiled[{row['kind']}].{key}")

    bench = _bench_module()
    assert set(res["data"]) == set(bench.DATA_CASES) == {"drosophila_skip_patch", "confocal_enhance", "cryoet_gan"}
    for name, row in res["data"].items():
        folder = Path(_data_dir(bench.DATA_CASES[name][0]))
        present = folder.is_dir() and any(folder.iterdir())
        if not present:  # no real data on this machine: checked first, as bench_data does
            assert row == {"skipped": f"no data at {folder}"}, row
        elif name in bench.QUICK_SKIPPED:  # --quick never prepares the confocal pairs
            assert row == {"skipped": bench.QUICK_SKIP}, row
        else:  # data present: a measured row, never a skip (errors make the benchmark fail, see below)
            assert "skipped" not in row, row
            _positive(row["items_per_s"], f"data[{name}].items_per_s")
            _positive(row["n_items"], f"data[{name}].n_items")
            assert row["fetched"] == 4 and row["overrides"] == bench.DATA_CASES[name][1]


def _bench_module():
    spec = importlib.util.spec_from_file_location("emgan_bench", REPO / "scripts" / "bench.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _data_dir(sub: str) -> str:
    from emgan_monai.bundle_utils import data_dir

    return data_dir(sub)


def test_bench_data_errors_fail_instead_of_skipping(tmp_path: Path, monkeypatch) -> None:
    """A dataset that cannot be built or read raises out of ``bench_data`` (and so ``bench.py`` exits non-zero)."""
    bench = _bench_module()
    broken = tmp_path / "cryoet"
    broken.mkdir()
    (broken / "tomo_1.mrc").write_bytes(b"this is not an MRC file")
    monkeypatch.setenv("EMGAN_DATA", str(tmp_path))
    monkeypatch.setattr(bench, "DATA_CASES", {"cryoet_gan": ("cryoet", {"train_tomos": [1]})})
    with pytest.raises(Exception) as info:
        bench.bench_data(items=1, quick=True)
    chain, exc = [], info.value
    while exc is not None:  # MONAI wraps the reader's error in "Failed to evaluate ConfigExpression"
        chain.append(str(exc))
        exc = exc.__cause__ or exc.__context__
    assert any(str(broken) in msg for msg in chain), chain  # the real error, naming the data folder
    # and absent data is the documented skip, not an error
    monkeypatch.setenv("EMGAN_DATA", str(tmp_path / "nothing"))
    skipped = {"cryoet_gan": {"skipped": f"no data at {tmp_path / 'nothing' / 'cryoet'}"}}
    assert bench.bench_data(items=1, quick=True) == skipped
