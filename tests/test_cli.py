"""``emgan-monai``: help, list, keys, refused keys / configs / bundles with suggestions, values, one-line errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from emgan_monai.cli import main, parse_overrides, user_keys

REPO = Path(__file__).resolve().parents[1]
DROS = REPO / "bundles" / "drosophila_skip_patch"


def test_help_runs_nothing(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "list" in out and "keys" in out and "run" in out


def test_list_names_every_bundle_and_kind(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for b in ("drosophila_skip_patch", "confocal_enhance", "cryoet_gan"):
        assert b in out
    lines = {line.split()[0]: line for line in out.splitlines() if line.startswith("  ")}
    assert "standalone" in lines["inference"] and "overlay" in lines["evaluate"]


def test_keys_lists_user_facing_keys_only(capsys):
    assert main(["keys", "drosophila_skip_patch", "inference_mask2em"]) == 0
    out = capsys.readouterr().out
    listed = {line.split()[0] for line in out.splitlines() if line.startswith("--")}
    assert {"--input_dir", "--output_dir", "--overwrite", "--device"} <= listed
    assert not listed & {"--preprocessing", "--postprocessing", "--evaluator", "--run", "--imports", "--datalist"}


def test_keys_take_descriptions_from_comments(tmp_path):
    cfg = tmp_path / "c.json"
    cfg.write_text('{"bundle_root": ".", "n": 3, "_comment_n": "how many", "net": {"_target_": "torch.nn.Identity"}}')
    keys = user_keys([cfg])
    assert keys["n"] == (3, "how many") and "net" not in keys


def test_unknown_key_is_refused_with_a_suggestion_before_any_work(capsys, tmp_path):
    rc = main(
        [
            "run",
            "drosophila_skip_patch",
            "inference_mask2em",
            "--input_folder",
            str(tmp_path),
            "--output_dir",
            str(tmp_path / "out"),
        ]
    )
    err = capsys.readouterr().err
    assert rc == 2
    assert err.count("\n") == 1 and err.startswith("error: unknown key '--input_folder'")
    assert "did you mean '--input_dir'?" in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["run", "cryoet_gn", "train"], "did you mean 'cryoet_gan'?"),
        (["run", "cryoet_gan", "infernce"], "did you mean 'inference'?"),
        (["run", "cryoet_gan", "evaluate"], "is an overlay: name its base config first"),
        (["run", "cryoet_gan", "inference", "--n_samples"], "--n_samples needs a value"),
    ],
)
def test_refused_commands_say_why_in_one_line(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err


def test_values_are_literals_and_json_booleans():
    got = parse_overrides(
        [
            "--a",
            "[4, 8]",
            "--b=1e-3",
            "--c",
            "false",
            "--d",
            "True",
            "--e",
            "out/x",
            "--f",
            "$torch.device('cpu')",
            "--g",
            "null",
        ]
    )
    assert got == {"a": [4, 8], "b": 1e-3, "c": False, "d": True, "e": "out/x", "f": "$torch.device('cpu')", "g": None}


def test_a_missing_input_folder_is_one_line_and_exit_2(tmp_path):
    """The installed entry point, end to end: the bundle's own input check fails and the user sees one line."""
    exe = Path(sys.executable).parent / "emgan-monai"
    cmd = [str(exe)] if exe.is_file() else [sys.executable, "-m", "emgan_monai.cli"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [
            *cmd,
            "run",
            "drosophila_skip_patch",
            "inference_mask2em",
            "--input_dir",
            str(tmp_path / "nowhere"),
            "--output_dir",
            str(tmp_path / "out"),
            "--device",
            "$torch.device('cpu')",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 2, proc.stderr[-3000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "nowhere" in last and "does not exist" in last
    assert "Traceback" not in proc.stderr


def test_a_bad_option_value_is_one_line_and_exit_2(tmp_path, capsys):
    """A value the bundle refuses while building its pipeline (a negative pixel size) reads as one line too."""
    rc = main(
        [
            "run",
            "drosophila_skip_patch",
            "inference_mask2em",
            "--pixel_size",
            "-1",
            "--output_dir",
            str(tmp_path / "out"),
            "--device",
            "$torch.device('cpu')",
        ]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and err[-1] == "error: --pixel_size must be a positive number (nm) or null, got -1", err[-3:]
    assert not any((tmp_path / "out").rglob("*"))  # nothing written
