"""``scripts/bench.py --quick``: runs end to end on tiny sizes and writes every section with finite positive numbers.

No timing assertions: speed lives in the benchmark itself (``docs/PERFORMANCE.md``).
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _positive(value: object, where: str) -> None:
    assert isinstance(value, (int, float)) and not isinstance(value, bool), f"{where}: {value!r} is not a number"
    assert math.isfinite(value) and value > 0, f"{where}: {value!r} is not finite and positive"


def test_bench_quick(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "bench.py"), "--quick", "--iterations", "1", "--threads", "1",
         "--out", str(out)],
        capture_output=True, text=True, timeout=300, cwd=tmp_path, check=False,
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

    assert set(res["data"]) == {"drosophila_skip_patch", "confocal_enhance", "cryoet_gan"}
    for name, row in res["data"].items():
        if "skipped" in row:  # no real data here, or too slow for --quick: a note says why
            assert isinstance(row["skipped"], str) and row["skipped"]
        else:
            _positive(row["items_per_s"], f"data[{name}].items_per_s")
            _positive(row["n_items"], f"data[{name}].n_items")
