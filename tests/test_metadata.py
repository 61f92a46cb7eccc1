"""``configs/metadata.json`` of every bundle: MONAI's required fields, changelog, and ``network_data_format``
against what ``network_def`` of the bundle's inference config really takes and returns.

The model-zoo JSON schema named in ``metadata["schema"]`` is a URL: offline, the required fields of the MONAI bundle
specification are checked by :func:`emgan_monai.export.bundle.check_metadata`. With the schema file downloaded
(``EMGAN_MONAI_SCHEMA=/path/meta_schema_20240725.json``) and ``jsonschema`` installed, ``monai.bundle.verify_metadata``
validates against it as well.
"""

from __future__ import annotations

import os
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
def test_monai_verify_metadata_with_local_schema(bundle, tmp_path):
    schema = os.environ.get("EMGAN_MONAI_SCHEMA")
    if not schema or not Path(schema).is_file():
        pytest.skip("set EMGAN_MONAI_SCHEMA to a downloaded copy of the model-zoo metadata schema")
    pytest.importorskip("jsonschema")
    from monai.bundle import verify_metadata

    verify_metadata(meta_file=str(bundle / "configs" / "metadata.json"), filepath=schema)


def test_checks_catch_wrong_metadata(tmp_path):
    """The checks are not vacuous: a wrong channel count, shape, range or missing field is reported."""
    meta = {
        "schema": "s", "version": "0.1.0", "changelog": {"0.1.0": "x"}, "monai_version": "1.6.1",
        "pytorch_version": "2.13.0", "numpy_version": "2.4.6", "required_packages_version": {}, "name": "toy",
        "task": "t", "description": "d", "authors": "a", "copyright": "c",
        "network_data_format": {
            "inputs": {"image": {"type": "image", "format": "magnitude", "num_channels": 3, "spatial_shape": [32, 32],
                                 "dtype": "float32", "value_range": [0, 1]}},
            "outputs": {"pred": {"type": "image", "format": "magnitude", "num_channels": 1, "spatial_shape": [32, 32],
                                 "dtype": "float32", "value_range": [0, 1]}},
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
    (bundle / "configs" / "inference.json").write_text(json.dumps({
        "network_def": {"_target_": "emgan_monai.networks.Pix2PixUNet", "channels": 4, "num_downs": 5,
                        "out_act": "sigmoid"}}))
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
