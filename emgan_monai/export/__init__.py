"""Sharing bundles: TorchScript export, zoo-style zip packages with ``large_files.yml``, bioimage.io packages.

- :mod:`emgan_monai.export.bundle`: read a bundle's metadata and inference config, build its network,
  export it to TorchScript through ``monai.bundle.ckpt_export``, check ``network_data_format`` against the network,
  package the bundle into a zip.
- :mod:`emgan_monai.export.schema`: validate ``metadata.json`` offline against ``metadata_schema.json`` (kept in
  this package).
- :mod:`emgan_monai.export.bioimageio`: write and validate a bioimage.io model package (needs the optional
  packages ``bioimageio.spec`` / ``bioimageio.core``; imported lazily).
"""

from emgan_monai.export.bundle import (
    IOSpec,
    MetadataError,
    PackageResult,
    build_network,
    bundle_parser,
    check_metadata,
    check_network_data_format,
    example_input,
    export_torchscript,
    inference_config,
    io_spec,
    list_bundles,
    load_metadata,
    package_bundle,
    sha256sum,
)
from emgan_monai.export.schema import METADATA_SCHEMA, SchemaError, schema_problems, validate_metadata_schema

__all__ = [
    "IOSpec",
    "METADATA_SCHEMA",
    "MetadataError",
    "PackageResult",
    "SchemaError",
    "build_network",
    "bundle_parser",
    "check_metadata",
    "check_network_data_format",
    "example_input",
    "export_torchscript",
    "inference_config",
    "io_spec",
    "list_bundles",
    "load_metadata",
    "package_bundle",
    "schema_problems",
    "sha256sum",
    "validate_metadata_schema",
]
