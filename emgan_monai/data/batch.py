"""Batch inference over a folder that does not stop at the first bad file.

MONAI's ``Dataset`` + ``DataLoader`` + ``SupervisedEvaluator`` abort the whole run on the first file that cannot be
read or does not fit the network, with a long traceback ending in "Failed to evaluate ConfigExpression". For batch
inference users expect every readable file processed, the failures listed at the end and a non-zero exit:

- :class:`TolerantDataset`: an iterable dataset over a datalist that applies the preprocessing to each item, yields
  the items that succeed and records ``(file, reason)`` for the others. Without a length, MONAI's evaluator runs one
  pass over whatever it yields (``epoch_length`` is learned from the end of the iterator).
- :class:`RequireShaped`: a preprocessing step that refuses images whose shape the bundle cannot process, saying
  which shapes it accepts (instead of failing later inside padding or convolution).
- :func:`report_failures`: after the evaluator ran, print one line per failure to stderr and exit with status 1.
- :func:`check_output_names`: before the run, refuse inputs that would write the same output file (``x.tif`` and
  ``x.png`` both giving ``x_em.tif``) and, unless overwriting, outputs that exist already, naming them.

In a bundle's ``inference.json``::

    "dataset": {"_target_": "emgan_monai.data.batch.TolerantDataset", "data": "@datalist",
                "transform": "@preprocessing"},
    "run": ["$@evaluator.run()", "$emgan_monai.data.batch.report_failures(@dataset)"]
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from typing import Any

import torch
from monai.config import KeysCollection
from monai.data import Dataset
from monai.transforms import MapTransform
from torch.utils.data import IterableDataset, get_worker_info

__all__ = [
    "BatchFailures",
    "RequireShaped",
    "TolerantDataset",
    "check_output_names",
    "failure_reason",
    "report_failure_list",
    "report_failures",
]


def failure_reason(error: BaseException, name: str | None = None) -> str:
    """One line saying why an item failed: the innermost error of the chain (MONAI wraps transform errors in
    ``RuntimeError("applying transform ...")``), as ``Type: message`` with the first line of the message; a leading
    ``"<name>: "`` (the package's errors name their file) is left out, the report names the file already."""
    seen = set()
    while id(error) not in seen:
        seen.add(id(error))
        nxt = error.__cause__ or error.__context__
        if nxt is None:
            break
        error = nxt
    text = str(error).strip().splitlines()
    first = text[0] if text else ""
    if name and first.startswith(f"{name}: "):
        first = first[len(name) + 2 :]
    return f"{type(error).__name__}: {first}".rstrip(": ")


class BatchFailures(RuntimeError):
    """Some inputs of a batch run failed; ``failures`` holds ``(file, reason)`` pairs."""

    def __init__(self, failures: Sequence[tuple[str, str]], total: int | None = None) -> None:
        self.failures = list(failures)
        self.total = total
        of = f" of {total}" if total is not None else ""
        lines = [f"{len(self.failures)}{of} input(s) failed:"] + [f"  {f}: {r}" for f, r in self.failures]
        super().__init__("\n".join(lines))


class TolerantDataset(IterableDataset):
    """Iterable over ``data`` through ``transform`` that skips, and records, the items that raise.

    Parameters
    ----------
    data
        The datalist (dictionaries such as ``{"image": path}``).
    transform
        Preprocessing applied to each item (as :class:`monai.data.Dataset`).
    key
        Key of the item whose value names the input in failure reports.

    Attributes
    ----------
    failures : list[tuple[str, str]]
        ``(file, reason)`` of every input of the latest pass that failed, in datalist order; an input listed in
        several items (e.g. one item per generator draw) is tried and listed once.
    succeeded : int
        Inputs yielded in the latest pass (an input listed in several items counts once).

    Notes
    -----
    Use it with ``num_workers=0``: the failures are recorded in the process that iterates.
    """

    def __init__(self, data: Sequence[Any], transform: Callable | None = None, key: str = "image") -> None:
        super().__init__()
        self.dataset = Dataset(data=data, transform=transform)
        self.data = data
        self.key = key
        self.failures: list[tuple[str, str]] = []
        self.succeeded = 0

    def _name(self, item: Any) -> str:
        value = item.get(self.key, item) if isinstance(item, Mapping) else item
        return str(value)

    def __iter__(self) -> Iterator[Any]:
        if get_worker_info() is not None:
            raise RuntimeError("TolerantDataset records failures in the iterating process: use num_workers=0")
        self.failures, self.succeeded = [], 0
        failed: set[str] = set()
        yielded: set[str] = set()
        for i, item in enumerate(self.data):
            name = self._name(item)
            if name in failed:  # an input listed several times (e.g. once per draw) is tried and reported once
                continue
            try:
                out = self.dataset[i]
            except Exception as e:  # noqa: BLE001 - every failure is reported at the end, none is swallowed
                self.failures.append((name, failure_reason(e, name)))
                failed.add(name)
                continue
            if name not in yielded:
                yielded.add(name)
                self.succeeded += 1
            yield out


def report_failures(dataset: TolerantDataset, stream: Any = None, exit_code: int = 1) -> None:
    """Print one line per failed input of ``dataset`` (``file: reason``) and exit with ``exit_code``; nothing if all
    succeeded (see :func:`report_failure_list`)."""
    report_failure_list(dataset.failures, len(dataset.failures) + dataset.succeeded, stream, exit_code)


def report_failure_list(
    failures: Sequence[tuple[str, str]], total: int | None = None, stream: Any = None, exit_code: int = 1
) -> None:
    """Print ``failures`` (``(file, reason)`` pairs) one per line and exit with ``exit_code``; nothing if empty.

    Raises
    ------
    SystemExit
        With ``exit_code`` when any input failed (a ``SystemExit`` passes through MONAI's config evaluation without
        another traceback).
    """
    if not failures:
        return
    stream = sys.stderr if stream is None else stream
    print(str(BatchFailures(failures, total)), file=stream, flush=True)
    raise SystemExit(exit_code)


class RequireShaped(MapTransform):
    """Refuse images (channel-first, ``(C, *spatial)``) whose shape the bundle cannot process, naming the file and
    saying which shapes are accepted.

    Parameters
    ----------
    keys
        Keys to check.
    spatial_dims
        Accepted numbers of spatial dimensions (e.g. ``(2, 3)``).
    channels
        Accepted channel count (``None``: any).
    min_size
        Smallest accepted size of every spatial axis (``0``: no limit); an int or one value per axis.
    accepts
        Plain-language description of the accepted inputs, quoted in the error.
    allow_missing_keys
        Skip absent keys.

    Raises
    ------
    ValueError
        ``"<file>: image of shape (...) (loaded channel-first); this bundle accepts <accepts>"``.
    """

    def __init__(
        self,
        keys: KeysCollection,
        spatial_dims: Sequence[int] = (2, 3),
        channels: int | None = 1,
        min_size: int | Sequence[int] = 0,
        accepts: str = "",
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.spatial_dims = tuple(int(d) for d in spatial_dims)
        self.channels = channels
        self.min_size = min_size
        self.accepts = accepts or (
            f"{'/'.join(map(str, self.spatial_dims))}D images"
            + (f" with {channels} channel(s)" if channels is not None else "")
        )

    def _problem(self, shape: tuple[int, ...]) -> str | None:
        spatial = shape[1:]
        if len(spatial) not in self.spatial_dims:
            return f"{len(spatial)} spatial dimension(s)"
        if self.channels is not None and shape[0] != self.channels:
            return f"{shape[0]} channel(s)"
        mins = [self.min_size] * len(spatial) if isinstance(self.min_size, int) else list(self.min_size)
        small = [s for s, m in zip(spatial, mins) if s < m]
        if small:
            return f"spatial size {tuple(spatial)} below the minimum {tuple(mins[: len(spatial)])}"
        return None

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            img = d[key]
            shape = tuple(int(s) for s in img.shape)
            problem = self._problem(shape)
            if problem is None:
                continue
            meta = getattr(img, "meta", {}) if isinstance(img, torch.Tensor) else {}
            name = meta.get("filename_or_obj", key)
            raise ValueError(
                f"{name}: image of shape {shape} (channel-first, as loaded) has {problem}; "
                f"this bundle accepts {self.accepts}"
            )
        return d


def check_output_names(
    datalist: Sequence[Mapping], savers: Sequence[Any], overwrite: bool = False, key: str = "image"
) -> list[str]:
    """Before a batch run: the output files of every input, refused when two inputs share one or, unless
    ``overwrite``, when one exists already.

    Parameters
    ----------
    datalist
        Items whose ``key`` names the input file.
    savers
        The run's savers (:class:`~emgan_monai.io.SafeSaveImaged` / ``SaveImaged`` or their array versions): each
        input's output path is computed exactly as the saver will compute it.
    overwrite
        Existing outputs are replaced (collisions between inputs are refused all the same: one result would be lost).
    key
        Key of the input file in the items.

    Returns
    -------
    list[str]
        The planned output paths.

    Raises
    ------
    DataError
        Naming the inputs that would write the same file (nothing has been written).
    FileExistsError
        Naming the first existing output and how many there are.
    """
    from emgan_monai.errors import DataError

    planned: dict[str, tuple[str, int]] = {}
    clashes: list[tuple[str, str, str]] = []
    seen: set[str] = set()
    for item in datalist:
        src = str(item[key]) if isinstance(item, Mapping) else str(item)
        if src in seen:  # an input listed several times (e.g. once per draw) writes its own outputs once
            continue
        seen.add(src)
        for i, saver in enumerate(savers):
            saver = getattr(saver, "saver", saver)
            path = os.path.abspath(
                saver.folder_layout.filename(**saver.fname_formatter({"filename_or_obj": src}, saver))
            )
            if path in planned:
                clashes.append((planned[path][0], src, path))
            else:
                planned[path] = (src, i)
    if clashes:
        first, second, path = clashes[0]
        what = (
            f"two outputs of {os.path.basename(first)}"
            if first == second
            else f"{os.path.basename(first)} and {os.path.basename(second)}"
        )
        hint = "choose another output extension" if first == second else "rename one of them or narrow --input_pattern"
        raise DataError(
            os.path.dirname(first),
            f"{what} would both be written as {path} ({len(clashes)} clash(es)); nothing was written: {hint}",
        )
    if not overwrite:
        existing = [p for p in planned if os.path.exists(p)]
        if existing:
            raise FileExistsError(
                f"{existing[0]} already exists ({len(existing)} of the {len(planned)} output files); "
                "choose another output_dir or pass --overwrite true to replace them"
            )
    return list(planned)
