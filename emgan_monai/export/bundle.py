"""Bundle-level export helpers: metadata checks, TorchScript through ``monai.bundle.ckpt_export``, zip packages.

Everything here works on a bundle folder (``configs/metadata.json``, ``configs/inference*.json``, ``models/``,
``docs/``, ``LICENSE``) and is generic over the bundles of this repository: the network is always the config's
``network_def`` of the standalone ``configs/inference.json`` and its weights ``models/model.pt``, as in the MONAI model
zoo (whose ``ci/verify_bundle.py`` checks exactly that pair).

One module, about 600 lines, for one concept: turning a bundle folder into a checked deliverable. Reading its
configs (:func:`inference_config`, :func:`bundle_parser`, :func:`build_network`), checking its metadata against the
network, exporting TorchScript and zipping it are the steps of that one pipeline and share the same config and
metadata helpers; splitting them would make each step re-derive the bundle's network and I/O spec.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from monai.bundle import ConfigParser

from emgan_monai.export.schema import SchemaError, validate_metadata_schema
from emgan_monai.export.wheel import build_package_wheel, install_note

__all__ = [
    "REQUIRED_IO_FIELDS",
    "REQUIRED_METADATA_FIELDS",
    "IOSpec",
    "MetadataError",
    "PackageResult",
    "build_network",
    "bundle_parser",
    "check_metadata",
    "check_network_data_format",
    "CONFIG_FORMATS_KEY",
    "compare_torchscript",
    "config_metadata",
    "torchscript_equivalent",
    "example_input",
    "export_torchscript",
    "inference_config",
    "io_spec",
    "list_bundles",
    "load_metadata",
    "package_bundle",
    "sha256sum",
    "training_state_files",
]

#: Top-level keys the MONAI bundle specification (``mb_specification``) makes mandatory in ``metadata.json``,
#: plus ``schema``/``changelog``/``name`` that the model-zoo schema and CI require. The schema itself is only
#: available online (``metadata["schema"]`` is a URL), so :func:`check_metadata` checks this list offline.
REQUIRED_METADATA_FIELDS: tuple[str, ...] = (
    "schema",
    "version",
    "changelog",
    "monai_version",
    "pytorch_version",
    "numpy_version",
    "name",
    "task",
    "description",
    "authors",
    "copyright",
    "network_data_format",
)
#: Keys every ``network_data_format`` input/output entry must have (MONAI bundle specification).
REQUIRED_IO_FIELDS: tuple[str, ...] = ("type", "format", "num_channels", "spatial_shape", "dtype", "value_range")

_PACKAGED_DIRS = ("configs", "models", "docs", "sample")
_PACKAGED_FILES = ("LICENSE",)
_REQUIRED_FILES = ("configs/metadata.json", "LICENSE", "docs/README.md", "docs/data_license.txt", "models/model.pt")
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)
#: metadata key describing the networks of standalone configs other than ``inference.json`` (:func:`config_metadata`)
CONFIG_FORMATS_KEY = "config_network_data_formats"  # fixed timestamps: the same bundle gives byte-identical archives


class MetadataError(ValueError):
    """``metadata.json`` of a bundle misses required content or disagrees with its network."""


@dataclass(frozen=True)
class IOSpec:
    """One tensor of ``network_data_format``, resolved to concrete values.

    Attributes
    ----------
    key
        Name in ``network_data_format`` (``"image"``, ``"pred"``).
    num_channels
        ``C`` of ``(B, C, *spatial_shape)``.
    spatial_shape
        Concrete spatial shape (symbolic entries such as ``"16*n"`` are evaluated at ``n = 1``, as
        ``monai.bundle ckpt_export`` does).
    dtype
        Declared torch dtype.
    value_range
        Declared ``(low, high)``.
    """

    key: str
    num_channels: int
    spatial_shape: tuple[int, ...]
    dtype: torch.dtype
    value_range: tuple[float, float]

    @property
    def shape(self) -> tuple[int, ...]:
        """``(1, C, *spatial_shape)``."""
        return (1, self.num_channels, *self.spatial_shape)


@dataclass
class PackageResult:
    """What :func:`package_bundle` wrote.

    Attributes
    ----------
    zip_path
        The archive ``<out_dir>/<name>_v<version>.zip``; its single top-level folder is ``<name>/``.
    large_files
        The ``large_files.yml`` entries (also stored in the archive as ``<name>/large_files.yml``).
    members
        Archive member names.
    torchscript_max_abs_diff
        Largest ``|TorchScript - eager|`` on the metadata's input shape (``None`` without TorchScript export).
    wheel
        Archive member of the embedded ``emgan_monai`` wheel (``None`` when packaged with ``wheel=False``).
    training_state
        ``<out_dir>/<name>_v<version>_training_state.zip``: what resumes or documents training but no config of the
        user-facing zip loads (full checkpoints, ablation pictures); ``None`` when the bundle has none.
    """

    zip_path: Path
    large_files: list[dict[str, str]]
    members: list[str] = field(default_factory=list)
    torchscript_max_abs_diff: float | None = None
    wheel: str | None = None
    training_state: Path | None = None


def training_state_files(bundle_dir: str | Path) -> list[str]:
    """Files of the bundle that belong in the training-state archive, not in the user-facing zip (relative paths).

    Under ``models/``: every file that no config (``configs/*.json`` but ``metadata.json``) names, i.e. full resumable
    checkpoints and weights kept for reference; ``models/model.pt`` and its TorchScript ``model.ts`` always stay. Under ``docs/ablation/``: the
    pictures (the tables, ``*.md`` / ``*.json``, stay with the docs).
    """
    bundle_dir = Path(bundle_dir)
    texts = "\n".join(
        p.read_text(encoding="utf-8")
        for p in sorted((bundle_dir / "configs").glob("*.json"))
        if p.name != "metadata.json"
    )
    out = [
        f.relative_to(bundle_dir).as_posix()
        for f in sorted((bundle_dir / "models").glob("*"))
        if f.is_file() and f.name not in ("model.pt", "model.ts") and f.name not in texts
    ]
    out += [f.relative_to(bundle_dir).as_posix() for f in sorted((bundle_dir / "docs" / "ablation").rglob("*.png"))]
    return out


def _write_zip(stage: Path, zip_path: Path) -> list[str]:
    """Zip ``stage`` (one top-level folder in the archive) with fixed timestamps; returns the member names."""
    members = []
    tmp_zip = zip_path.with_suffix(".zip.part")
    with zipfile.ZipFile(tmp_zip, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for f in sorted(stage.rglob("*")):
            rel = f.relative_to(stage.parent)
            if not f.is_file() or _ignored(f.relative_to(stage)):
                continue
            info = zipfile.ZipInfo(rel.as_posix(), date_time=_ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            with open(f, "rb") as fh:
                zf.writestr(info, fh.read())
            members.append(rel.as_posix())
    tmp_zip.replace(zip_path)
    return members


def list_bundles(bundles_dir: str | Path) -> list[Path]:
    """Folders under ``bundles_dir`` that have ``configs/metadata.json``, sorted by name."""
    root = Path(bundles_dir)
    return sorted(p for p in root.iterdir() if (p / "configs" / "metadata.json").is_file()) if root.is_dir() else []


def load_metadata(bundle_dir: str | Path) -> dict[str, Any]:
    """Read ``<bundle_dir>/configs/metadata.json``.

    Raises
    ------
    MetadataError
        If the file is missing or is not a JSON object.
    """
    path = Path(bundle_dir) / "configs" / "metadata.json"
    try:
        with open(path, encoding="utf-8") as f:
            meta = json.load(f)
    except FileNotFoundError as e:
        raise MetadataError(f"{path}: missing") from e
    except json.JSONDecodeError as e:
        raise MetadataError(f"{path}: not valid JSON ({e})") from e
    if not isinstance(meta, dict):
        raise MetadataError(f"{path}: expected a JSON object, got {type(meta).__name__}")
    return meta


def _load_json(path: Path) -> dict[str, Any]:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def inference_config(bundle_dir: str | Path) -> Path:
    """The bundle's image-in inference config: the one an image -> image tool (bioimage.io, MONAI Label's
    ``BundleInferTask``) should use.

    Among the standalone ``configs/inference*.json`` with a ``network_def``, prefer the one that also defines the MONAI
    evaluator components ``preprocessing``, ``inferer`` and ``postprocessing`` with an ``image`` input (for
    ``drosophila_skip_patch``, whose ``inference.json`` is a noise -> image generator, that is
    ``inference_mask2em.json``), then ``inference.json``. The zoo's own checks (``verify_net_in_out``, ``ckpt_export``)
    always read ``configs/inference.json``: :func:`export_torchscript` does too unless told otherwise.

    Raises
    ------
    FileNotFoundError
        If no inference config with ``network_def`` exists.
    """
    configs = Path(bundle_dir) / "configs"
    ranked = []
    for path in sorted(configs.glob("inference*.json")):
        try:
            cfg = _load_json(path)
        except (OSError, ValueError):
            continue
        if "network_def" not in cfg:
            continue
        evaluator_like = all(
            k in cfg for k in ("preprocessing", "inferer", "postprocessing")
        ) and "image" in json.dumps(cfg["preprocessing"])
        ranked.append((evaluator_like, path.name == "inference.json", path))
    if not ranked:
        raise FileNotFoundError(f"{configs}: no inference*.json with a 'network_def'")
    return max(ranked, key=lambda r: (r[0], r[1]))[2]


def bundle_parser(bundle_dir: str | Path, config_file: str | Path | None = None, **overrides: Any) -> ConfigParser:
    """A ``ConfigParser`` holding ``config_file`` (default :func:`inference_config`; a list merges a base config and
    its overlays) and the bundle metadata.

    ``bundle_root`` is set to ``bundle_dir``; ``overrides`` replace config keys (``"device": "cpu"`` ...).
    """
    bundle_dir = Path(bundle_dir).resolve()
    config_file = Path(config_file) if config_file is not None else inference_config(bundle_dir)
    parser = ConfigParser()
    parser.read_config(str(config_file))
    parser.read_meta(str(bundle_dir / "configs" / "metadata.json"))
    parser["bundle_root"] = str(bundle_dir)
    for k, v in overrides.items():
        parser[k] = v
    return parser


def build_network(
    bundle_dir: str | Path,
    config_file: str | Path | None = None,
    net_id: str = "network_def",
    ckpt_file: str | Path | None = None,
    key_in_ckpt: str | None = None,
    require_weights: bool = False,
) -> torch.nn.Module:
    """Instantiate ``net_id`` of the bundle config on CPU, load its weights, return it in ``eval()`` mode.

    Parameters
    ----------
    bundle_dir
        Bundle folder.
    config_file
        Config holding ``net_id`` (default :func:`inference_config`).
    net_id
        Config id of the network definition.
    ckpt_file
        State dict to load (default ``models/model.pt``). With the default and no such file, the network keeps its
        random initialisation unless ``require_weights``.
    key_in_ckpt
        Key of the network's state dict in a nested checkpoint (``{"model": ..., "optimizer": ...}``).
    require_weights
        Raise ``FileNotFoundError`` when there are no weights to load.
    """
    parser = bundle_parser(bundle_dir, config_file)
    net = parser.get_parsed_content(net_id, instantiate=True)
    if not isinstance(net, torch.nn.Module):
        raise TypeError(f"{bundle_dir}: config id '{net_id}' is a {type(net).__name__}, not a torch.nn.Module")
    path = Path(ckpt_file) if ckpt_file is not None else Path(bundle_dir) / "models" / "model.pt"
    if path.is_file():
        state = torch.load(path, map_location="cpu", weights_only=True)
        if key_in_ckpt:
            state = state[key_in_ckpt]
        net.load_state_dict(state)
    elif ckpt_file is not None or require_weights:
        raise FileNotFoundError(f"{path}: weights of '{net_id}' not found")
    return net.eval()


def _concrete_shape(shape: Any, where: str) -> tuple[int, ...]:
    """``spatial_shape`` entries are ints or MONAI shape patterns (``"16*n"``, ``"2**p"``, ``"*"``).

    Evaluated at ``n = p = 1`` by MONAI's own ``_get_fake_spatial_shape``, the rule ``ckpt_export`` uses for its
    trace input, so the shapes checked here are the shapes exported.
    """
    from monai.bundle.scripts import _get_fake_spatial_shape

    try:
        return tuple(int(s) for s in _get_fake_spatial_shape(list(shape)))
    except (ValueError, TypeError, SyntaxError) as e:
        raise MetadataError(f"{where}: spatial_shape {shape!r} is not a MONAI shape pattern ({e})") from e


def io_spec(meta: dict[str, Any], kind: str = "inputs", key: str | None = None, where: str = "metadata") -> IOSpec:
    """Resolve one entry of ``network_data_format[kind]`` (the first one unless ``key``)."""
    try:
        entries = meta["network_data_format"][kind]
        key = key if key is not None else next(iter(entries))
        d = entries[key]
    except (KeyError, StopIteration, TypeError) as e:
        raise MetadataError(f"{where}: network_data_format has no {kind} entry {key or ''}") from e
    missing = [f for f in REQUIRED_IO_FIELDS if f not in d]
    if missing:
        raise MetadataError(f"{where}: network_data_format.{kind}.{key} lacks {missing}")
    try:
        dtype = getattr(torch, np.dtype(d["dtype"]).name)
    except (TypeError, AttributeError) as e:
        raise MetadataError(f"{where}: network_data_format.{kind}.{key}.dtype {d['dtype']!r} is not a dtype") from e
    lo, hi = (float(v) for v in d["value_range"])
    return IOSpec(key, int(d["num_channels"]), _concrete_shape(d["spatial_shape"], where), dtype, (lo, hi))


def check_metadata(meta: dict[str, Any], where: str = "metadata.json") -> None:
    """Check the MONAI-required fields of ``meta`` offline.

    Checks :data:`REQUIRED_METADATA_FIELDS`, that ``version`` is a key of ``changelog``, that the packages field
    is present exactly once (``required_packages_version``, or the name used before MONAI 1.4,
    ``optional_packages_version``: MONAI 1.6.1 renames the old key on load, so a file with both silently loses
    ``required_packages_version``), and :data:`REQUIRED_IO_FIELDS` for every input and output.

    Raises
    ------
    MetadataError
        Listing every problem found.
    """
    problems = [f"missing '{k}'" for k in REQUIRED_METADATA_FIELDS if k not in meta]
    if "version" in meta and meta["version"] not in meta.get("changelog", {}):
        problems.append(f"version {meta['version']!r} is not a key of 'changelog'")
    pkg_keys = [k for k in ("required_packages_version", "optional_packages_version") if k in meta]
    if not pkg_keys:
        problems.append("missing 'required_packages_version'")
    elif len(pkg_keys) == 2:
        problems.append(
            "both 'required_packages_version' and 'optional_packages_version': MONAI renames the deprecated "
            "'optional_packages_version' on load and overwrites 'required_packages_version'; keep only the former"
        )
    ndf = meta.get("network_data_format", {})
    for kind in ("inputs", "outputs"):
        entries = ndf.get(kind) if isinstance(ndf, dict) else None
        if not entries:
            problems.append(f"network_data_format has no '{kind}'")
            continue
        for key, d in entries.items():
            missing = [f for f in REQUIRED_IO_FIELDS if f not in d]
            if missing:
                problems.append(f"network_data_format.{kind}.{key} lacks {missing}")
    if problems:
        raise MetadataError(f"{where}: " + "; ".join(problems))


def example_input(spec: IOSpec, seed: int = 0, batch_size: int = 1) -> torch.Tensor:
    """A reproducible random tensor ``(batch_size, C, *spatial_shape)`` of the declared dtype, uniform in range."""
    g = torch.Generator().manual_seed(seed)
    lo, hi = spec.value_range
    x = torch.rand((batch_size, spec.num_channels, *spec.spatial_shape), generator=g, dtype=torch.float64)
    x = lo + (hi - lo) * x
    return x.round().to(spec.dtype) if not spec.dtype.is_floating_point else x.to(spec.dtype)


def check_network_data_format(
    bundle_dir: str | Path,
    config_file: str | Path | None = None,
    network: torch.nn.Module | None = None,
    atol: float = 1e-5,
    check_range: bool | None = None,
) -> dict[str, Any]:
    """Run ``network_def`` on a tensor of the declared input shape/dtype and compare with the declared output.

    ``config_file`` defaults to ``configs/inference.json``, the config ``network_data_format`` describes; another
    config is checked against its own entry (:func:`config_metadata`) and weights.
    Checks output rank, channels, spatial shape, dtype, finiteness and that values lie in ``value_range``
    (within ``atol``). Uses the shipped weights when present, else the random initialisation.
    ``check_range=None`` checks the value range only with shipped weights (a randomly initialised network without
    a bounded output activation may leave the range the trained one respects).

    Returns
    -------
    dict
        ``{"input_shape", "output_shape", "output_dtype", "output_min", "output_max"}``.

    Raises
    ------
    MetadataError
        Naming every mismatch.
    """
    bundle_dir = Path(bundle_dir)
    where = str(bundle_dir / "configs" / "metadata.json")
    config_file = Path(config_file) if config_file is not None else bundle_dir / "configs" / "inference.json"
    meta, weights = config_metadata(load_metadata(bundle_dir), config_file)
    spec_in, spec_out = io_spec(meta, "inputs", where=where), io_spec(meta, "outputs", where=where)
    net = (
        network
        if network is not None
        else build_network(
            bundle_dir, config_file, ckpt_file=bundle_dir / weights if (bundle_dir / weights).is_file() else None
        )
    )
    if check_range is None:
        check_range = network is not None or (bundle_dir / weights).is_file()
    x = example_input(spec_in)
    with torch.no_grad():
        y = net(x)
    if isinstance(y, (list, tuple)):
        y = y[0]
    problems = []
    expected = (1, spec_out.num_channels, *spec_out.spatial_shape)
    if tuple(y.shape) != expected:
        problems.append(f"output shape {tuple(y.shape)} != declared {expected} for input {tuple(x.shape)}")
    if y.dtype != spec_out.dtype:
        problems.append(f"output dtype {y.dtype} != declared {spec_out.dtype}")
    if not torch.isfinite(y).all():
        problems.append("output has non-finite values")
    lo, hi = spec_out.value_range
    ymin, ymax = float(y.min()), float(y.max())
    if check_range and (ymin < lo - atol or ymax > hi + atol):
        problems.append(f"output range [{ymin:.4g}, {ymax:.4g}] outside declared value_range [{lo}, {hi}]")
    if problems:
        raise MetadataError(f"{where}: network_data_format disagrees with network_def: " + "; ".join(problems))
    return {
        "input_shape": tuple(x.shape),
        "output_shape": tuple(y.shape),
        "output_dtype": str(y.dtype),
        "output_min": ymin,
        "output_max": ymax,
    }


def export_torchscript(
    bundle_dir: str | Path,
    filepath: str | Path | None = None,
    config_file: str | Path | None = None,
    ckpt_file: str | Path | None = None,
    net_id: str = "network_def",
    use_trace: bool = False,
    input_shape: tuple[int, ...] | None = None,
) -> Path:
    """Export ``net_id`` with its weights to TorchScript through ``monai.bundle.ckpt_export``.

    The same function as ``python -m monai.bundle ckpt_export network_def --filepath ... --ckpt_file ...
    --meta_file ... --config_file ...``; metadata and config are stored in the ``.ts`` file
    (``monai.data.load_net_with_metadata`` reads them back).

    The network is scripted (``torch.jit.script``), as the model zoo's ``ci/verify_bundle.py`` does: every bundle's
    ``network_def`` is scriptable, so the export keeps its shape checks and any size the network accepts;
    ``use_trace=True`` traces at ``input_shape`` instead.

    Parameters
    ----------
    filepath
        Output file (default ``<bundle_dir>/models/model.ts``).
    config_file
        Config with ``net_id`` (default ``configs/inference.json``, the zoo's choice); stored in the ``.ts`` file.
    ckpt_file
        Weights (default ``<bundle_dir>/models/model.pt``).
    input_shape
        Trace input shape ``(1, C, *spatial)`` (default: from ``network_data_format``).

    Returns
    -------
    Path
        The written file.
    """
    from monai.bundle import ckpt_export

    bundle_dir = Path(bundle_dir).resolve()
    filepath = Path(filepath) if filepath is not None else bundle_dir / "models" / "model.ts"
    ckpt_file = Path(ckpt_file) if ckpt_file is not None else bundle_dir / "models" / "model.pt"
    config_file = Path(config_file) if config_file is not None else bundle_dir / "configs" / "inference.json"
    if input_shape is None:
        input_shape = io_spec(load_metadata(bundle_dir), "inputs").shape
    filepath.parent.mkdir(parents=True, exist_ok=True)
    ckpt_export(
        net_id=net_id,
        filepath=str(filepath),
        ckpt_file=str(ckpt_file),
        meta_file=str(bundle_dir / "configs" / "metadata.json"),
        config_file=str(config_file),
        use_trace=use_trace,
        input_shape=list(input_shape),
        bundle_root=str(bundle_dir),
    )
    return filepath


def config_metadata(meta: dict[str, Any], config_file: str | Path) -> tuple[dict[str, Any], str]:
    """The metadata as seen from one standalone config's ``network_def``, and that network's weight file.

    ``network_data_format`` and ``models/model.pt`` describe ``configs/inference.json`` (what the zoo checks). A
    bundle with another image-in config whose network differs (Drosophila ``inference_mask2em.json``: the stage-2
    mask -> EM network, ``models/em_generator.pt``) describes it under
    ``metadata[CONFIG_FORMATS_KEY][<config name>] = {"network_data_format": ..., "weights": "models/..."}``.
    """
    entry = meta.get(CONFIG_FORMATS_KEY, {}).get(Path(config_file).name)
    if entry is None:
        return meta, "models/model.pt"
    return {**meta, "network_data_format": entry["network_data_format"]}, str(entry["weights"])


def torchscript_equivalent(net: torch.nn.Module) -> torch.nn.Module:
    """``net`` with its Python-only steps switched off, i.e. what ``torch.jit.script`` compiles of it.

    :class:`~emgan_monai.networks.TwoStageGenerator` closes membrane outlines by a watershed and drops small
    mitochondria in Python only; its TorchScript export thresholds the distance maps."""
    from emgan_monai.networks.two_stage_generator import TwoStageGenerator

    if isinstance(net, TwoStageGenerator):
        net.close_membranes, net.min_mito_size = False, 0
    return net


def compare_torchscript(
    bundle_dir: str | Path,
    ts_file: str | Path,
    config_file: str | Path | None = None,
    ckpt_file: str | Path | None = None,
    seed: int = 0,
) -> float:
    """Largest ``|ts(x) - eager(x)|`` for a random ``x`` of the declared input shape and dtype of the config's
    network (:func:`config_metadata`), eager taken as :func:`torchscript_equivalent`.

    Both forwards start from ``torch.manual_seed(seed)``, so networks that sample noise inside ``forward`` (the
    cryo-ET CycleGAN generator) are compared on the same draws.
    """
    config_file = config_file if config_file is not None else Path(bundle_dir) / "configs" / "inference.json"
    meta, weights = config_metadata(load_metadata(bundle_dir), config_file)
    spec = io_spec(meta, "inputs")
    ckpt_file = ckpt_file if ckpt_file is not None else Path(bundle_dir) / weights
    eager = torchscript_equivalent(build_network(bundle_dir, config_file, ckpt_file=ckpt_file, require_weights=True))
    scripted = torch.jit.load(str(ts_file), map_location="cpu").eval()
    x = example_input(spec, seed=seed)
    with torch.no_grad():
        # generators with noise injection draw from torch's RNG in forward: same seed, same draws in both graphs
        torch.manual_seed(seed)
        y_ts = scripted(x)
        torch.manual_seed(seed)
        y_eager = eager(x)
    return float((y_ts - y_eager).abs().max())


def sha256sum(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def _ignored(path: Path) -> bool:
    return any(part.startswith(".") or part == "__pycache__" for part in path.parts) or path.suffix == ".pyc"


def package_bundle(
    bundle_dir: str | Path,
    out_dir: str | Path,
    torchscript: bool = True,
    base_url: str | None = None,
    overwrite: bool = False,
    atol: float = 1e-5,
    wheel: bool = True,
) -> PackageResult:
    """Package a bundle model-zoo style into ``<out_dir>/<name>_v<version>.zip``.

    The archive holds what a user of the bundle needs: ``<name>/{configs,models,docs,sample}/``, ``LICENSE`` and
    ``large_files.yml`` (never the ``runs/`` or ``eval/`` folders of local trainings); ``models/`` holds
    ``model.pt`` and the weights the configs load. Full training checkpoints and ablation pictures
    (:func:`training_state_files`) go to a second archive, ``<name>_v<version>_training_state.zip``. ``large_files.yml`` lists every file under ``models/``
    with a relative ``path``, ``hash_val`` (SHA-256) and ``hash_type``; ``url`` is written only when
    ``base_url`` is given (``<base_url>/<path>``), never as a placeholder. With ``torchscript`` the network is
    exported to ``models/model.ts`` inside the archive (the bundle folder is not modified) and checked against
    the eager network within ``atol``. With ``wheel`` (the default) a wheel of ``emgan_monai`` built from this source
    tree goes to ``<name>/wheels/`` and the packaged ``docs/README.md`` gains a section on installing it
    (:mod:`emgan_monai.export.wheel`), so the unpacked bundle runs without this repository. A ``<zip>.sha256`` file is
    written beside the archive.

    Raises
    ------
    FileNotFoundError
        If a file the zoo requires (``configs/metadata.json``, ``LICENSE``, ``docs/README.md``,
        ``docs/data_license.txt``, ``models/model.pt``) is missing.
    MetadataError
        If the metadata lacks required fields or violates ``metadata_schema.json``, or the TorchScript export
        differs from eager by more than ``atol``.
    FileExistsError
        If the archive exists and ``overwrite`` is false.
    """
    bundle_dir = Path(bundle_dir).resolve()
    missing = [f for f in _REQUIRED_FILES if not (bundle_dir / f).is_file()]
    if missing:
        raise FileNotFoundError(f"{bundle_dir}: cannot package, missing {missing}")
    meta = load_metadata(bundle_dir)
    check_metadata(meta, str(bundle_dir / "configs" / "metadata.json"))
    try:
        validate_metadata_schema(meta, where=str(bundle_dir / "configs" / "metadata.json"))
    except SchemaError as e:
        raise MetadataError(str(e)) from e
    name, version = meta["name"], meta["version"]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    zip_path = out_dir / f"{name}_v{version}.zip"
    if zip_path.exists() and not overwrite:
        raise FileExistsError(f"{zip_path} exists (pass overwrite=True / --overwrite to replace it)")

    with tempfile.TemporaryDirectory(prefix=f"{name}_pkg_") as tmp:
        stage = Path(tmp) / name
        stage.mkdir()
        for d in _PACKAGED_DIRS:
            if (bundle_dir / d).is_dir():
                shutil.copytree(bundle_dir / d, stage / d, ignore=shutil.ignore_patterns(".*", "__pycache__", "*.pyc"))
        for f in _PACKAGED_FILES:
            shutil.copy2(bundle_dir / f, stage / f)
        state_stage = Path(tmp) / "training_state" / name
        for rel in training_state_files(stage):
            (state_stage / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.move(stage / rel, state_stage / rel)
        wheel_member = None
        if wheel:
            built = build_package_wheel(stage / "wheels")
            wheel_member = f"{name}/wheels/{built.name}"
            with open(stage / "docs" / "README.md", "a", encoding="utf-8") as fh:
                fh.write(install_note(built.name, name))
        diff = None
        if torchscript:
            ts = export_torchscript(stage, stage / "models" / "model.ts")
            diff = compare_torchscript(stage, ts)
            if not diff <= atol:
                raise MetadataError(f"{bundle_dir}: TorchScript export differs from eager by {diff:.3g} > {atol}")
        entries = []
        for f in sorted((stage / "models").rglob("*")):
            if f.is_file() and not _ignored(f.relative_to(stage)):
                rel = f.relative_to(stage).as_posix()
                entry = {"path": rel}
                if base_url:
                    entry["url"] = f"{base_url.rstrip('/')}/{rel}"
                entry.update({"hash_val": sha256sum(f), "hash_type": "sha256"})
                entries.append(entry)
        with open(stage / "large_files.yml", "w", encoding="utf-8") as fh:
            yaml.safe_dump({"large_files": entries}, fh, sort_keys=False)

        members = _write_zip(stage, zip_path)
        state_zip = None
        if state_stage.is_dir():
            state_zip = out_dir / f"{name}_v{version}_training_state.zip"
            _write_zip(state_stage, state_zip)
    for z in (zip_path, state_zip):
        if z is not None:
            (out_dir / f"{z.name}.sha256").write_text(f"{sha256sum(z)}  {z.name}\n", encoding="utf-8")
    return PackageResult(zip_path, entries, members, diff, wheel_member, state_zip)
