"""``configs/metadata.json`` of every bundle: MONAI's required fields, changelog, and ``network_data_format``
against what ``network_def`` of the bundle's inference config really takes and returns.

The model-zoo JSON schema named in ``metadata["schema"]`` is a URL that cannot be fetched offline, so every bundle is
validated against the schema kept in the repository (``emgan_monai/export/metadata_schema.json``, the MONAI bundle
specification's fields and types) by :mod:`emgan_monai.export.schema`, and against ``jsonschema`` as well where that
is installed. Nothing here is skipped.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from emgan_monai.export.bundle import (
    MetadataError,
    build_network,
    check_metadata,
    check_network_data_format,
    example_input,
    io_spec,
    list_bundles,
    load_metadata,
)
from emgan_monai.export.schema import SchemaError, load_metadata_schema, schema_problems, validate_metadata_schema

REPO = Path(__file__).resolve().parents[1]
BUNDLES = list_bundles(REPO / "bundles")
IDS = [b.name for b in BUNDLES]


@pytest.mark.parametrize("bundle", BUNDLES, ids=IDS)
def test_required_fields_and_changelog(bundle):
    meta = load_metadata(bundle)
    check_metadata(meta, str(bundle / "configs" / "metadata.json"))
    assert meta["version"] in meta["changelog"]
    assert meta["name"] == bundle.name
    assert (bundle / "LICENSE").is_file() and (bundle / "docs" / "data_license.txt").is_file()


@pytest.mark.parametrize("bundle", BUNDLES, ids=IDS)
def test_network_data_format_matches_network(bundle):
    report = check_network_data_format(bundle)
    spec_out = io_spec(load_metadata(bundle), "outputs")
    assert report["output_shape"] == (1, spec_out.num_channels, *spec_out.spatial_shape)
    assert report["output_dtype"] == str(spec_out.dtype)


@pytest.mark.parametrize("bundle", BUNDLES, ids=IDS)
def test_metadata_follows_the_schema_kept_in_the_repo(bundle):
    """Every bundle's metadata.json against ``emgan_monai/export/metadata_schema.json``, offline and never skipped."""
    meta = load_metadata(bundle)
    problems = schema_problems(meta)
    assert not problems, f"{bundle.name}/configs/metadata.json:\n" + "\n".join(problems)
    validate_metadata_schema(meta)
    try:  # where jsonschema is installed, the reference implementation agrees
        import jsonschema
    except ImportError:
        return
    jsonschema.Draft7Validator(load_metadata_schema()).validate(meta)


def _valid_meta() -> dict:
    tensor = {
        "type": "image",
        "format": "magnitude",
        "modality": "EM",
        "num_channels": 1,
        "spatial_shape": ["8*n", "8*n"],
        "dtype": "float32",
        "value_range": [0, 1],
        "is_patch_data": False,
        "channel_def": {"0": "intensity"},
    }
    return {
        "schema": "https://example.org/meta_schema.json",
        "version": "0.1.0",
        "changelog": {"0.1.0": "first"},
        "monai_version": "1.6.1",
        "pytorch_version": "2.13.0",
        "numpy_version": "2.4.6",
        "required_packages_version": {"emgan_monai": "0.1.0"},
        "name": "toy",
        "task": "t",
        "description": "d",
        "authors": "a",
        "copyright": "c",
        "eval_metrics": {"ssim": 0.5},
        "network_data_format": {"inputs": {"image": dict(tensor)}, "outputs": {"pred": dict(tensor)}},
    }


@pytest.mark.parametrize(
    "mutate, match",
    [
        (lambda m: m.pop("copyright"), "missing required 'copyright'"),
        (lambda m: m.update(version=1), r"metadata.version: 1 is not of type string"),
        (lambda m: m.update(name="has space"), r"metadata.name: .* does not match"),
        (lambda m: m["changelog"].update({"next": "x"}), r"changelog key 'next'"),
        (lambda m: m["required_packages_version"].update(torch=None), r"required_packages_version.torch"),
        (lambda m: m["network_data_format"]["inputs"]["image"].pop("modality"), r"inputs.image: missing required"),
        (lambda m: m["network_data_format"]["inputs"]["image"].update(num_channels=0), "below the minimum 1"),
        (lambda m: m["network_data_format"]["inputs"]["image"].update(num_channels=True), "not of type integer"),
        (
            lambda m: m["network_data_format"]["outputs"]["pred"].update(dtype="float"),
            r"pred.dtype: 'float' is not one",
        ),
        (lambda m: m["network_data_format"]["outputs"]["pred"].update(value_range=[0, 1, 2]), "matches none of anyOf"),
        (lambda m: m["network_data_format"]["outputs"]["pred"].update(spatial_shape=[8, 8, 8, 8]), "more than 3 items"),
        (lambda m: m["network_data_format"]["outputs"]["pred"].update(spatial_shape=["n; import os"]), "anyOf"),
        (lambda m: m["network_data_format"]["outputs"]["pred"].update(is_patch_data="false"), "not of type boolean"),
        (lambda m: m["network_data_format"].update(outputs={}), "outputs: fewer than 1 entries"),
        (lambda m: m["eval_metrics"].update(ssim="0.5"), r"eval_metrics.ssim"),
    ],
)
def test_schema_rejects_wrong_metadata(mutate, match):
    meta = _valid_meta()
    assert schema_problems(meta) == []
    mutate(meta)
    with pytest.raises(SchemaError, match=match):
        validate_metadata_schema(meta, where="toy")


def test_schema_validator_refuses_keywords_it_does_not_implement():
    with pytest.raises(SchemaError, match="not implemented"):
        schema_problems({"a": 1}, {"type": "object", "patternProperties": {"^a$": {"type": "string"}}})


def test_checks_catch_wrong_metadata(tmp_path):
    """The checks are not vacuous: a wrong channel count, shape, range or missing field is reported."""
    meta = {
        "schema": "s",
        "version": "0.1.0",
        "changelog": {"0.1.0": "x"},
        "monai_version": "1.6.1",
        "pytorch_version": "2.13.0",
        "numpy_version": "2.4.6",
        "required_packages_version": {},
        "name": "toy",
        "task": "t",
        "description": "d",
        "authors": "a",
        "copyright": "c",
        "network_data_format": {
            "inputs": {
                "image": {
                    "type": "image",
                    "format": "magnitude",
                    "num_channels": 3,
                    "spatial_shape": [32, 32],
                    "dtype": "float32",
                    "value_range": [0, 1],
                }
            },
            "outputs": {
                "pred": {
                    "type": "image",
                    "format": "magnitude",
                    "num_channels": 1,
                    "spatial_shape": [32, 32],
                    "dtype": "float32",
                    "value_range": [0, 1],
                }
            },
        },
    }
    check_metadata(meta)
    with pytest.raises(MetadataError, match="changelog"):
        check_metadata({**meta, "version": "0.2.0"})
    with pytest.raises(MetadataError, match="missing 'task'"):
        check_metadata({k: v for k, v in meta.items() if k != "task"})
    with pytest.raises(MetadataError, match="both"):
        check_metadata({**meta, "optional_packages_version": {}})

    import json

    bundle = tmp_path / "toy"
    (bundle / "configs").mkdir(parents=True)
    (bundle / "configs" / "inference.json").write_text(
        json.dumps(
            {
                "network_def": {
                    "_target_": "emgan_monai.networks.Pix2PixUNet",
                    "channels": 4,
                    "num_downs": 5,
                    "out_act": "sigmoid",
                }
            }
        )
    )
    (bundle / "configs" / "metadata.json").write_text(json.dumps(meta))
    net = build_network(bundle)
    assert check_network_data_format(bundle, network=net)["output_shape"] == (1, 1, 32, 32)
    x = example_input(io_spec(meta))
    assert x.shape == (1, 3, 32, 32) and x.dtype == torch.float32 and 0 <= float(x.min()) <= float(x.max()) <= 1
    wrong = json.loads(json.dumps(meta))
    wrong["network_data_format"]["outputs"]["pred"]["num_channels"] = 2
    wrong["network_data_format"]["outputs"]["pred"]["value_range"] = [0.6, 1]
    (bundle / "configs" / "metadata.json").write_text(json.dumps(wrong))
    with pytest.raises(MetadataError, match="output shape .* declared.*outside declared value_range"):
        check_network_data_format(bundle, network=net)
    np.testing.assert_equal(io_spec(wrong, "outputs").value_range, (0.6, 1.0))
