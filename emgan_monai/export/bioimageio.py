"""bioimage.io model packages for the image-to-image generators of the bundles (TorchScript weights).

Needs the optional packages ``bioimageio.spec`` (>= 0.5.12) and ``bioimageio.core`` (>= 0.11), imported here only.
The package describes the bundle's ``network_def`` exactly: the input is the network input of
``network_data_format`` (e.g. the 3-channel one-hot mask of ``drosophila_skip_patch``, not an RGB drawing; the
bundle's ``preprocessing`` does that conversion), the output is the network output. Spatial sizes are
``min + k * step`` with ``step`` the network's ``size_multiple`` when it has one.

Offline validation: citations carry DOIs (checked by pattern, never fetched) and no field needs a web link, so
``bioimageio.core.test_model`` on the package checks the format, the local files and their SHA-256, and
reproduces the test output from the test input with the TorchScript weights.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch

from emgan_monai.export.bundle import (
    IOSpec,
    build_network,
    compare_torchscript,
    config_metadata,
    example_input,
    export_torchscript,
    inference_config,
    io_spec,
    load_metadata,
)

if TYPE_CHECKING:
    from bioimageio.spec.model.v0_5 import IntervalOrRatioDType

__all__ = ["DEFAULT_CITATIONS", "export_bioimageio", "make_cover", "test_input_from_file", "validate_bioimageio"]

#: Citations every package gets, as ``(text, doi)``; bundle-specific ones are added from ``citations``.
DEFAULT_CITATIONS: tuple[tuple[str, str], ...] = (
    (
        "Isola, Zhu, Zhou, Efros. Image-to-Image Translation with Conditional Adversarial Networks. CVPR 2017",
        "10.1109/CVPR.2017.632",
    ),
    (
        "Cardoso et al. MONAI: An open-source framework for deep learning in healthcare. 2022",
        "10.48550/arXiv.2211.02701",
    ),
)

_SPATIAL_IDS = {2: ("y", "x"), 3: ("z", "y", "x")}


def _rgb_preview(x: np.ndarray) -> np.ndarray:
    """``(C, *spatial)`` -> ``(H, W, 3)`` uint8 for a cover: middle plane of 3D, 3 channels as RGB, else grey."""
    if x.ndim == 4:
        x = x[:, x.shape[1] // 2]
    x = x.astype(np.float64)
    if x.shape[0] >= 3:
        rgb = x[:3]
    else:
        rgb = np.repeat(x[:1], 3, axis=0)
    lo, hi = np.percentile(rgb, (0.5, 99.5))
    rgb = np.clip((rgb - lo) / max(hi - lo, 1e-8), 0, 1)
    return (np.moveaxis(rgb, 0, -1) * 255).round().astype(np.uint8)


def make_cover(test_input: np.ndarray, test_output: np.ndarray, path: str | Path) -> Path:
    """Write a 2:1 PNG cover: input (left) next to output (right), from ``(1, C, *spatial)`` test tensors."""
    from PIL import Image

    left, right = _rgb_preview(test_input[0]), _rgb_preview(test_output[0])
    if left.shape != right.shape:
        right = np.asarray(Image.fromarray(right).resize(left.shape[1::-1]))
    img = Image.fromarray(np.concatenate([left, right], axis=1))
    if img.width > 1024:  # bioimage.io asks for covers < 500 kB
        img = img.resize((1024, round(1024 * img.height / img.width)))
    img.save(path)
    return Path(path)


def _short(text: str, n: int) -> str:
    """``text`` cut at the last sentence end within ``n`` characters (bioimage.io warns above 512)."""
    if len(text) <= n:
        return text
    cut = text[:n]
    end = cut.rfind(". ")
    return cut[: end + 1] if end > 0 else cut[: n - 3] + "..."


def _safe_name(text: str) -> str:
    """bioimage.io names: <= 64 characters of letters, digits, ``_``, ``-``, parentheses and spaces."""
    return re.sub(r"[^A-Za-z0-9_\-() ]", " ", text).strip()[:64]


def _axes(
    spec: IOSpec, step: int | None, channel_names: Sequence[str], output_of: str | None = None, min_size: int = 0
) -> list:
    from bioimageio.spec.model import v0_5

    nd = len(spec.spatial_shape)
    if nd not in _SPATIAL_IDS:
        raise ValueError(f"bioimage.io export supports 2D or 3D tensors, got spatial shape {spec.spatial_shape}")
    axes: list = [v0_5.BatchAxis(), v0_5.ChannelAxis(channel_names=[v0_5.Identifier(c) for c in channel_names])]
    for axis_id, size in zip(_SPATIAL_IDS[nd], spec.spatial_shape):
        if output_of is not None:
            axes.append(
                v0_5.SpaceOutputAxis(
                    id=v0_5.AxisId(axis_id),
                    size=v0_5.SizeReference(tensor_id=v0_5.TensorId(output_of), axis_id=v0_5.AxisId(axis_id)),
                )
            )
        elif step:
            axes.append(
                v0_5.SpaceInputAxis(
                    id=v0_5.AxisId(axis_id),
                    size=v0_5.ParameterizedSize(min=int(max(step, min_size)), step=int(step)),
                )
            )
        else:
            axes.append(v0_5.SpaceInputAxis(id=v0_5.AxisId(axis_id), size=int(size)))
    return axes


#: the tensor dtypes a package may declare, by their bioimage.io name (``IntervalOrRatioDataDescr.type``)
_DATA_TYPES: dict[torch.dtype, IntervalOrRatioDType] = {
    torch.float32: "float32",
    torch.float64: "float64",
    torch.uint8: "uint8",
    torch.int8: "int8",
    torch.uint16: "uint16",
    torch.int16: "int16",
    torch.uint32: "uint32",
    torch.int32: "int32",
    torch.uint64: "uint64",
    torch.int64: "int64",
}


def _data_type(dtype: torch.dtype) -> IntervalOrRatioDType:
    """bioimage.io's name of a tensor dtype; ``ValueError`` (as pydantic's validation raised) for one it lacks."""
    if dtype not in _DATA_TYPES:
        raise ValueError(f"bioimage.io packages hold no {dtype} tensors; supported: {sorted(_DATA_TYPES.values())}")
    return _DATA_TYPES[dtype]


def _channel_names(meta: dict[str, Any], kind: str, key: str, n: int) -> list[str]:
    defs = meta["network_data_format"][kind][key].get("channel_def", {})
    names = []
    for i in range(n):
        label = str(defs.get(str(i), f"channel{i}")).split(",")[0]
        names.append(re.sub(r"[^A-Za-z0-9_]", "_", label).strip("_") or f"channel{i}")
    return names


def test_input_from_file(
    bundle_dir: str | Path, image_file: str | Path, config_file: str | Path | None = None, max_size: int = 256
) -> torch.Tensor:
    """Network input ``(1, C, *spatial)`` made from an image file by the bundle's own ``preprocessing``.

    The file goes through the config's ``preprocessing`` (key ``image``: e.g. a drawn RGB mask -> one-hot), then is
    centre-cropped / zero-padded (MONAI ``ResizeWithPadOrCrop``) to the metadata's ``spatial_shape``: a fixed size as
    it is, a pattern such as ``"8*n"`` to the largest allowed size within the image and ``max_size``.
    """
    from monai.transforms import ResizeWithPadOrCrop

    from emgan_monai.export.bundle import bundle_parser

    parser = bundle_parser(bundle_dir, config_file)
    pre = parser.get_parsed_content("preprocessing", instantiate=True)
    meta, _ = config_metadata(load_metadata(bundle_dir), config_file or inference_config(bundle_dir))
    spec = io_spec(meta, "inputs")
    img = pre({"image": str(image_file)})["image"]
    target = []
    for axis, (lo, step) in enumerate(_shape_steps(meta)):
        if step == 0:  # fixed size
            target.append(lo)
        else:  # largest allowed size within the image and max_size
            target.append(max(lo, lo + (min(img.shape[axis + 1], max_size) - lo) // step * step))
    img = ResizeWithPadOrCrop(target)(img)
    return torch.as_tensor(np.asarray(img), dtype=spec.dtype)[None]


def _shape_steps(meta: dict[str, Any], kind: str = "inputs") -> list[tuple[int, int]]:
    """Per spatial axis ``(min, step)`` of ``network_data_format[kind]``'s ``spatial_shape`` patterns.

    ``"8*n"`` gives ``(8, 8)``, a fixed ``256`` gives ``(256, 0)`` (MONAI's pattern evaluated at ``n = p = 1, 2``).
    """
    from monai.bundle.scripts import _get_fake_spatial_shape

    shape = next(iter(meta["network_data_format"][kind].values()))["spatial_shape"]
    one = _get_fake_spatial_shape(shape, p=1, n=1)
    two = _get_fake_spatial_shape(shape, p=2, n=2)
    return [(int(a), int(b) - int(a)) for a, b in zip(one, two)]


def export_bioimageio(
    bundle_dir: str | Path,
    output_path: str | Path,
    test_input: np.ndarray | torch.Tensor | None = None,
    config_file: str | Path | None = None,
    citations: Sequence[tuple[str, str]] = (),
    tags: Sequence[str] = (),
    overwrite: bool = False,
) -> Path:
    """Write a bioimage.io model package (zip) for the bundle's ``network_def`` with TorchScript weights.

    Parameters
    ----------
    bundle_dir
        Bundle folder with ``models/model.pt`` and ``configs/metadata.json``.
    output_path
        ``.zip`` to write.
    test_input
        Network input ``(1, C, *spatial)`` as declared by ``network_data_format.inputs`` (e.g. a one-hot mask of a
        real or synthetic section). Default: a reproducible random tensor of the declared shape and range.
    config_file
        Config with ``network_def`` (default: :func:`~emgan_monai.export.bundle.inference_config`).
    citations
        Extra ``(text, doi)`` pairs: the seed paper, the training data. Both are written with a DOI only, so
        validation needs no network.
    tags
        Extra bioimage.io tags.
    overwrite
        Replace an existing ``output_path``.

    Returns
    -------
    Path
        ``output_path``.

    Raises
    ------
    FileExistsError
        If ``output_path`` exists and not ``overwrite``.
    ValueError
        If ``test_input`` does not have the declared channels/rank, or the TorchScript export differs from eager.
    """
    from bioimageio.spec import save_bioimageio_package
    from bioimageio.spec.model import v0_5

    bundle_dir = Path(bundle_dir).resolve()
    output_path = Path(output_path)
    if output_path.exists() and not overwrite:
        raise FileExistsError(f"{output_path} exists (pass overwrite=True / --overwrite to replace it)")
    config_file = Path(config_file) if config_file is not None else inference_config(bundle_dir)
    meta, weights = config_metadata(load_metadata(bundle_dir), config_file)
    where = str(bundle_dir / "configs" / "metadata.json")
    spec_in, spec_out = io_spec(meta, "inputs", where=where), io_spec(meta, "outputs", where=where)
    ckpt_file = bundle_dir / weights
    net = build_network(bundle_dir, config_file, ckpt_file=ckpt_file, require_weights=True)
    # sizes the network accepts: its own size multiple (Pix2PixUNet: 2**num_downs), else the metadata pattern's step
    steps = {st for _, st in _shape_steps(meta)}
    step = getattr(net, "size_multiple", None) or (steps.pop() if len(steps) == 1 and 0 not in steps else None)
    # a network that mirrors its input outwards (NoiseUNet's border_pad) needs more than the pad per axis; the traced
    # graph keeps the pad of the test input's size, so the smallest size is the first multiple of step above it
    pad = int(getattr(net, "border_pad", 0) or 0)
    min_size = (step * (pad // step + 1) if step else pad + 1) if pad else 0

    x = example_input(spec_in) if test_input is None else torch.as_tensor(np.asarray(test_input))
    x = x.to(spec_in.dtype)
    if x.ndim != len(spec_in.shape) or x.shape[:2] != (1, spec_in.num_channels):
        raise ValueError(
            f"test_input must be (1, {spec_in.num_channels}, ...) with {len(spec_in.spatial_shape)} "
            f"spatial axes, got {tuple(x.shape)}"
        )

    with tempfile.TemporaryDirectory(prefix="bioimageio_") as tmp_dir:
        tmp = Path(tmp_dir)
        # traced at the test input's shape, as the package was built before the zoo export became scripted: the
        # bioimage.io checks run the weights at the smallest size the axes allow, which the traced graph accepts
        ts = export_torchscript(
            bundle_dir,
            tmp / "weights.pt",
            config_file=config_file,
            ckpt_file=ckpt_file,
            input_shape=tuple(x.shape),
            use_trace=True,
        )
        diff = compare_torchscript(bundle_dir, ts, config_file=config_file, ckpt_file=ckpt_file)
        if diff > 1e-5:
            raise ValueError(f"{bundle_dir}: TorchScript differs from eager by {diff:.3g}")
        with torch.no_grad():
            # a generator that injects noise (drosophila stage 2) draws it from torch's global RNG: the test output
            # is made under seed 0, the seed that bioimageio.core's test sets before it runs the model
            torch.manual_seed(0)
            y = torch.jit.load(str(ts), map_location="cpu").eval()(x)
        x_np, y_np = x.numpy(), y.numpy().astype(np.dtype(str(spec_out.dtype).removeprefix("torch.")))
        np.save(tmp / "test_input.npy", x_np)
        np.save(tmp / "test_output.npy", y_np)
        make_cover(x_np, y_np, tmp / "cover.png")
        shutil.copy2(bundle_dir / "docs" / "data_license.txt", tmp / "data_license.txt")
        shutil.copy2(bundle_dir / "configs" / "metadata.json", tmp / "monai_metadata.json")
        doc = tmp / "README.md"
        doc.write_text(_documentation(meta, spec_in, spec_out, step, bundle_dir, min_size), encoding="utf-8")

        name_in, name_out = spec_in.key, spec_out.key
        inputs = [
            v0_5.InputTensorDescr(
                id=v0_5.TensorId(name_in),
                description=f"network input of {meta['name']} ({meta['network_data_format']['inputs'][name_in]['format']})",
                axes=_axes(
                    spec_in, step, _channel_names(meta, "inputs", name_in, spec_in.num_channels), min_size=min_size
                ),
                test_tensor=v0_5.FileDescr(source=tmp / "test_input.npy"),
                data=v0_5.IntervalOrRatioDataDescr(type=_data_type(spec_in.dtype), range=spec_in.value_range),
            )
        ]
        outputs = [
            v0_5.OutputTensorDescr(
                id=v0_5.TensorId(name_out),
                description=f"network output of {meta['name']}",
                axes=_axes(
                    spec_out, None, _channel_names(meta, "outputs", name_out, spec_out.num_channels), output_of=name_in
                ),
                test_tensor=v0_5.FileDescr(source=tmp / "test_output.npy"),
                data=v0_5.IntervalOrRatioDataDescr(type=_data_type(spec_out.dtype), range=spec_out.value_range),
            )
        ]
        authors = [v0_5.Author(name=a.strip()) for a in str(meta.get("authors", "unknown")).split(",") if a.strip()]
        cite = [v0_5.CiteEntry(text=t, doi=v0_5.Doi(d)) for t, d in (*citations, *DEFAULT_CITATIONS)]
        descr = v0_5.ModelDescr(
            name=_safe_name(meta.get("task", meta["name"])),
            description=_short(meta["description"], 512),
            authors=authors,
            cite=cite,
            license=v0_5.LicenseId("Apache-2.0"),
            documentation=v0_5.FileDescr(source=doc),
            covers=[v0_5.FileDescr(source=tmp / "cover.png")],
            attachments=[
                v0_5.FileDescr(source=tmp / "data_license.txt"),
                v0_5.FileDescr(source=tmp / "monai_metadata.json"),
            ],
            tags=sorted(
                {"pytorch", "monai", "gan", "image-to-image", "2d" if len(spec_in.spatial_shape) == 2 else "3d", *tags}
            ),
            version=meta["version"],
            inputs=inputs,
            outputs=outputs,
            weights=v0_5.WeightsDescr(
                torchscript=v0_5.TorchscriptWeightsDescr(
                    source=ts, pytorch_version=v0_5.Version(torch.__version__.split("+")[0])
                )
            ),
        )
        output_path.parent.mkdir(parents=True, exist_ok=True)
        tmp_zip = output_path.with_suffix(".part.zip")
        save_bioimageio_package(descr, output_path=tmp_zip)
        tmp_zip.replace(output_path)
    return output_path


def _documentation(
    meta: dict[str, Any], spec_in: IOSpec, spec_out: IOSpec, step: int | None, bundle_dir: Path, min_size: int = 0
) -> str:
    size = (
        f"multiples of {step} px per axis (minimum {max(step, min_size)})"
        if step
        else f"exactly {spec_in.spatial_shape}"
    )
    ndf = meta["network_data_format"]
    return "\n".join(
        [
            f"# {meta['name']} (bioimage.io export of a MONAI bundle)",
            "",
            meta["description"],
            "",
            "## Inputs and outputs",
            "",
            f"- input `{spec_in.key}`: `(1, {spec_in.num_channels}, {', '.join(_SPATIAL_IDS[len(spec_in.spatial_shape)])})`"
            f" {str(spec_in.dtype).removeprefix('torch.')} in {list(spec_in.value_range)}, channels "
            f"{ndf['inputs'][spec_in.key].get('channel_def', {})}; spatial size {size}.",
            f"- output `{spec_out.key}`: `(1, {spec_out.num_channels}, same spatial size)` "
            f"{str(spec_out.dtype).removeprefix('torch.')} in {list(spec_out.value_range)}.",
            "",
            "The MONAI bundle's `preprocessing` (file reading, conversion of drawn masks or raw images to this input) and "
            "sliding-window inference for arbitrary sizes are not part of this package; use the bundle for them.",
            "",
            "## Training data and licence",
            "",
            f"{meta.get('data_source', '')}. The data licence is attached as `data_license.txt`; the weights and code "
            "are Apache-2.0.",
            "",
            "## Intended use",
            "",
            meta.get("intended_use", ""),
            "",
            "## Validation",
            "",
            "The bundle's `configs/evaluate.json` computes the quantitative evaluation on held-out data; its metrics "
            "and the training record are in the bundle's `docs/README.md`. The test tensors of this package are the "
            "TorchScript output for the packaged test input.",
            "",
            "## References",
            "",
            *[f"- {r}" for r in meta.get("references", [])],
            "",
        ]
    )


def validate_bioimageio(package: str | Path, determinism: Literal["seed_only", "full"] = "full") -> Any:
    """Validate a package with bioimage.io's own test (``bioimageio.core.test_model``), offline.

    Returns the ``ValidationSummary``; ``summary.status == "passed"`` when the format is valid, the files match
    their hashes and the TorchScript weights reproduce the test output.
    """
    from bioimageio.core import test_model

    return test_model(str(package), weight_format="torchscript", determinism=determinism)
