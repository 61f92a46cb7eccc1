"""Checkpointable random state, image pool, learning-rate rule and output helpers for the GAN trainers."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from numbers import Number
from typing import Any, Protocol

import numpy as np
import torch
import torch.distributed as dist

__all__ = [
    "RandomState",
    "DataLoaderRandomState",
    "FullPassLoader",
    "ImagePool",
    "LinearDecayLR",
    "scalars",
    "leave_process_group",
    "GeneratorState",
]


class FullPassLoader:
    """A sized iterable (e.g. a ``DataLoader``) whose iterators stop after one full pass by themselves.

    ignite keeps a data iterator across epochs and learns that it is exhausted only when the next epoch calls
    ``next`` on it once more. For a shuffling ``DataLoader`` that extra call runs the tail of
    ``RandomSampler.__iter__``, which draws one more ``randperm`` from the loader's generator; a run resumed from a
    checkpoint saved at the end of an epoch has no such iterator and skips that draw, so every later epoch would see
    a different order. An iterator of this wrapper yields ``len(loader)`` batches from ``iter(loader)`` and then ends
    without asking the loader's iterator again, so a continued and a resumed run draw the same numbers. ignite then
    calls ``iter()`` on the wrapper at the next epoch through its public data protocol (``Engine.run(data)``).

    Everything else (``len``, ``sampler``, ``dataset``, ``batch_size``, ``generator``...) is the wrapped loader's.

    Parameters
    ----------
    loader
        Any iterable with ``__len__``; each ``iter(loader)`` starts a new pass.
    """

    def __init__(self, loader: Any) -> None:
        len(loader)  # a TypeError here: only sized loaders can be wrapped
        self.loader = loader

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):  # a generator: iter(loader) runs at the first next(), when ignite asks for the first batch
        n = len(self.loader)
        if n == 0:
            return
        for i, batch in enumerate(self.loader):
            yield batch
            if i + 1 >= n:
                return

    def __getattr__(self, name: str) -> Any:
        if name == "loader":  # not set yet (copy/pickle): do not recurse
            raise AttributeError(name)
        return getattr(self.loader, name)


def leave_process_group() -> None:
    """Wait for every rank, then destroy the default process group (no-op when none is initialised).

    The bundles' ``multi_gpu_train.json`` call this in ``finalize``. Rank 0 usually finishes later than the others
    (it alone saves checkpoints and runs rank-0 handlers); a rank that tears gloo down while its peer still holds
    the connection can abort on exit ("terminate called without an active exception", SIGABRT). The barrier makes
    all ranks leave together.
    """
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


class _Stateful(Protocol):
    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> Any: ...


def _dist_rank_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _numpy_states(obj: Any, found: dict[int, np.random.RandomState], seen: set[int], depth: int = 0) -> None:
    """Collect the ``np.random.RandomState`` (attribute ``R``) of every MONAI ``Randomizable`` inside ``obj``.

    Walks attributes, lists, tuples and dict values in a fixed order (as :func:`monai.data.utils.set_rnd` does, but
    also into Randomizable containers such as ``Compose``), skipping tensors, arrays and strings.
    """
    if isinstance(obj, (str, bytes, int, float, bool, type(None), torch.Tensor, np.ndarray, torch.Generator)):
        return
    if id(obj) in seen or depth > 64:  # transforms nest a few levels; stop at pathological object graphs
        return
    seen.add(id(obj))
    if isinstance(obj, Mapping):
        for value in list(obj.values()):
            _numpy_states(value, found, seen, depth + 1)
        return
    if isinstance(obj, (list, tuple)):
        for value in obj:
            _numpy_states(value, found, seen, depth + 1)
        return
    attrs = getattr(obj, "__dict__", None)
    if attrs is None:
        return
    r = attrs.get("R")
    if isinstance(r, np.random.RandomState):
        found.setdefault(id(r), r)
    for key, value in list(attrs.items()):
        if not key.startswith("__") and key != "R":
            _numpy_states(value, found, seen, depth + 1)


class DataLoaderRandomState:
    """Checkpointable random state of a training data loader: its shuffling and its random transforms.

    A ``DataLoader(..., shuffle=True, generator=g)`` draws each epoch's order from ``g``; MONAI's ``DataLoader`` with
    ``num_workers=0`` seeds the dataset's ``Randomizable`` transforms once, at construction, and they then draw from
    their own ``np.random.RandomState`` objects epoch after epoch. Neither is in a checkpoint of networks,
    optimisers and ``torch``'s global generator, so a resumed run would replay epoch 1's order and augmentations.
    This object saves and restores both (as plain tensors and numbers: loadable with ``weights_only=True``).

    With ``num_workers > 0`` each epoch's workers re-seed the transforms from a base seed drawn from the loader's
    generator (or torch's global one), so restoring the generator is enough and the transforms are not collected.

    Parameters
    ----------
    loader
        A ``torch.utils.data.DataLoader`` (or MONAI's); other iterables give an empty state.
    """

    def __init__(self, loader: Any) -> None:
        generators: list[torch.Generator] = []
        for gen in (getattr(loader, "generator", None), getattr(getattr(loader, "sampler", None), "generator", None)):
            if isinstance(gen, torch.Generator) and all(gen is not g for g in generators):
                generators.append(gen)
        self.generators = generators
        found: dict[int, np.random.RandomState] = {}
        if getattr(loader, "num_workers", 0) == 0 and getattr(loader, "dataset", None) is not None:
            _numpy_states(loader.dataset, found, set())
        self.transform_states = list(found.values())

    def __bool__(self) -> bool:
        return bool(self.generators or self.transform_states)

    def state_dict(self) -> dict[str, Any]:
        transforms = []
        for r in self.transform_states:
            state = r.get_state(legacy=True)  # ("MT19937", key, pos, has_gauss, cached_gaussian)
            if not isinstance(state, tuple):  # a RandomState on another bit generator: no legacy tuple
                raise ValueError(f"only MT19937 random states can be saved, got {state.get('bit_generator')!r}")
            name, key, pos, has_gauss, cached = state
            transforms.append(
                {
                    "key": torch.from_numpy(key.astype(np.int64)),
                    "pos": int(pos),
                    "has_gauss": int(has_gauss),
                    "cached_gaussian": float(cached),
                }
            )
        return {"generators": [g.get_state() for g in self.generators], "transforms": transforms}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        gens, transforms = list(state.get("generators", [])), list(state.get("transforms", []))
        if len(gens) != len(self.generators) or len(transforms) != len(self.transform_states):
            raise ValueError(
                f"checkpoint data-loader state has {len(gens)} generator(s) and {len(transforms)} random transform(s); "
                f"this data loader has {len(self.generators)} and {len(self.transform_states)}: the data pipeline "
                "changed since the checkpoint was written."
            )
        for g, st in zip(self.generators, gens):
            g.set_state(st.cpu())
        for r, st in zip(self.transform_states, transforms):
            key = st["key"].cpu().numpy().astype(np.uint32)
            r.set_state(("MT19937", key, int(st["pos"]), int(st["has_gauss"]), float(st["cached_gaussian"])))


class GeneratorState:
    """``state_dict`` / ``load_state_dict`` of one :class:`torch.Generator`, to register with :class:`RandomState`.

    For modules that own a generator (e.g. :class:`~emgan_monai.transforms.diffaugment.DiffAugment`): registered with
    the trainer's ``rng``, its draws resume bit-exactly from a checkpoint.
    """

    def __init__(self, generator: torch.Generator) -> None:
        self.generator = generator

    def state_dict(self) -> dict[str, Any]:
        return {"state": self.generator.get_state()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.generator.set_state(state["state"].cpu())


class RandomState:
    """Checkpointable source of all of a trainer's randomness.

    Holds a CPU :class:`torch.Generator` (latent noise, image-pool draws, gradient-penalty ``eps``) and, when
    ``include_global`` is set, snapshots torch's global CPU (and current CUDA device) generator states so that
    dropout / noise injection inside networks and shuffling DataLoaders (seeded from the global generator at the start
    of each epoch) also resume bit-exactly. Other stateful objects whose content depends on these draws (the CycleGAN
    image pools) are registered with :meth:`register` and saved with it. Pass it to ``CheckpointSaver`` /
    ``CheckpointLoader`` as ``{"rng": trainer.rng}``. The trainers register their training data loader
    (:meth:`register_data_loader`), so shuffling and random transforms resume exactly too.

    Parameters
    ----------
    seed
        Seed of the trainer generator. Under ``torch.distributed`` each rank uses ``seed + rank`` so that ranks draw
        different noise.
    include_global
        Also save/restore torch's global generator states.

    Notes
    -----
    Draws are made on the CPU and moved to the target device, so a checkpoint resumes identically on any device.
    When a checkpoint (written by rank 0) is loaded under ``torch.distributed`` with more than one rank, every rank
    re-seeds from a value drawn from the loaded state plus its rank: ranks stay decorrelated, resume is reproducible
    but not identical to an uninterrupted multi-rank run.
    """

    def __init__(self, seed: int = 0, include_global: bool = True) -> None:
        rank, _ = _dist_rank_world()
        self.seed = int(seed)
        self.include_global = include_global
        self.generator = torch.Generator(device="cpu")
        self.generator.manual_seed(self.seed + rank)
        self._registered: dict[str, _Stateful] = {}

    def register(self, name: str, obj: _Stateful) -> None:
        """Save and restore ``obj.state_dict()`` together with the generator under ``name``."""
        if not (callable(getattr(obj, "state_dict", None)) and callable(getattr(obj, "load_state_dict", None))):
            raise ValueError(f"object registered as {name!r} must have state_dict() and load_state_dict().")
        self._registered[name] = obj

    def register_data_loader(self, loader: Any, name: str = "data_loader") -> bool:
        """Save and restore the shuffling and augmentation random state of ``loader`` with this object.

        See :class:`DataLoaderRandomState`. Returns ``True`` when the loader had any such state to register.
        """
        state = DataLoaderRandomState(loader)
        if state:
            self.register(name, state)
        return bool(state)

    def randn(
        self, shape: Sequence[int], device: torch.device | str | None = None, dtype: torch.dtype = torch.float32
    ) -> torch.Tensor:
        """Standard normal tensor of ``shape`` drawn from the trainer generator, moved to ``device``."""
        return torch.randn(tuple(shape), generator=self.generator, dtype=dtype).to(device)

    def rand(
        self, shape: Sequence[int], device: torch.device | str | None = None, dtype: torch.dtype = torch.float32
    ) -> torch.Tensor:
        """Uniform ``[0, 1)`` tensor of ``shape`` drawn from the trainer generator, moved to ``device``."""
        return torch.rand(tuple(shape), generator=self.generator, dtype=dtype).to(device)

    def randint(self, high: int) -> int:
        """One integer uniformly drawn from ``[0, high)``."""
        return int(torch.randint(0, high, (1,), generator=self.generator).item())

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"seed": self.seed, "generator": self.generator.get_state()}
        if self.include_global:
            state["global_cpu"] = torch.get_rng_state()
            if torch.cuda.is_available() and torch.cuda.is_initialized():
                state["global_cuda"] = torch.cuda.get_rng_state()
        state["registered"] = {name: obj.state_dict() for name, obj in self._registered.items()}
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if "generator" not in state:
            raise ValueError(f"not a RandomState state dict (keys: {sorted(state)}).")
        # generator states must be CPU ByteTensors, whatever ``map_location`` the checkpoint was loaded with
        self.generator.set_state(state["generator"].cpu())
        rank, world = _dist_rank_world()
        if world > 1:
            base = int(torch.randint(0, 2**62, (1,), generator=self.generator).item())
            self.generator.manual_seed(base + rank)
            if self.include_global:
                torch.manual_seed(base + 7919 * (rank + 1))
        elif self.include_global:
            if "global_cpu" in state:
                torch.set_rng_state(state["global_cpu"].cpu())
            if "global_cuda" in state and torch.cuda.is_available():
                torch.cuda.set_rng_state(state["global_cuda"].cpu())
        registered = state.get("registered", {})
        for name, obj in self._registered.items():
            if name in registered:
                obj.load_state_dict(registered[name])


class ImagePool:
    """History of generated images fed to the discriminator (Shrivastava et al. 2017; pix2pix/CycleGAN ``ImagePool``).

    Until the pool holds ``pool_size`` images every incoming image is stored and returned. Afterwards, each incoming
    image is, with probability 0.5, swapped with a uniformly chosen stored image (the stored one is returned and the
    new one takes its place), otherwise returned as is.

    Parameters
    ----------
    pool_size
        Capacity; ``0`` disables the pool (images are returned unchanged).
    rng
        Source of randomness; a fresh ``RandomState(0)`` when ``None``.
    """

    def __init__(self, pool_size: int = 50, rng: RandomState | None = None) -> None:
        if pool_size < 0:
            raise ValueError(f"pool_size must be >= 0, got {pool_size}.")
        self.pool_size = int(pool_size)
        self.rng = RandomState(0, include_global=False) if rng is None else rng
        self.images: list[torch.Tensor] = []

    def __len__(self) -> int:
        return len(self.images)

    @torch.no_grad()
    def query(self, images: torch.Tensor) -> torch.Tensor:
        """Return a batch of the same shape mixing ``images`` ``(B, C, H, W[, D])`` with stored ones (detached)."""
        images = images.detach()
        if self.pool_size == 0:
            return images
        out = []
        for image in images:
            if len(self.images) < self.pool_size:
                self.images.append(image.clone())
                out.append(image)
            elif self.rng.rand((1,)).item() > 0.5:
                idx = self.rng.randint(self.pool_size)
                out.append(self.images[idx].to(image.device))
                self.images[idx] = image.clone()
            else:
                out.append(image)
        return torch.stack(out, dim=0)

    __call__ = query

    def state_dict(self) -> dict[str, Any]:
        return {"pool_size": self.pool_size, "images": [im.cpu() for im in self.images]}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if int(state["pool_size"]) != self.pool_size:
            raise ValueError(f"checkpoint pool_size {state['pool_size']} differs from this pool's {self.pool_size}.")
        device = self.images[0].device if self.images else None
        self.images = [im.clone().to(device) if device is not None else im.clone() for im in state["images"]]


class LinearDecayLR:
    """pix2pix learning-rate rule: constant for ``n_constant`` epochs, then linear decay towards 0.

    A picklable callable for :class:`torch.optim.lr_scheduler.LambdaLR` (its attributes are saved in the scheduler's
    ``state_dict``). With ``LrScheduleHandler(epoch_level=True)`` the scheduler steps once per epoch, and the factor
    for the 0-based epoch ``e`` is ``1 - max(0, e + 1 - n_constant) / (n_decay + 1)`` (pix2pix ``lambda_rule`` with
    ``epoch_count=1``), clipped at 0: ``1`` for the first ``n_constant`` epochs, then ``n_decay/(n_decay+1)`` down
    to ``1/(n_decay+1)`` over the ``n_decay`` decay epochs, and ``0`` afterwards.

    Parameters
    ----------
    n_constant
        Epochs at the initial learning rate.
    n_decay
        Epochs of linear decay.
    """

    def __init__(self, n_constant: int, n_decay: int) -> None:
        if n_constant < 0 or n_decay < 0:
            raise ValueError(f"n_constant and n_decay must be >= 0, got {n_constant} and {n_decay}.")
        self.n_constant = int(n_constant)
        self.n_decay = int(n_decay)

    def __call__(self, epoch: int) -> float:
        return max(0.0, 1.0 - max(0, epoch + 1 - self.n_constant) / float(self.n_decay + 1))

    def __repr__(self) -> str:
        return f"LinearDecayLR(n_constant={self.n_constant}, n_decay={self.n_decay})"


def scalars(output: Any) -> dict[str, float]:
    """Float scalars of a trainer output, for ``StatsHandler`` / ``TensorBoardStatsHandler`` ``output_transform``.

    Parameters
    ----------
    output
        ``engine.state.output``: a dict (values that are Python numbers or one-element tensors are kept), or a
        decollated list of such dicts (the first item is used).

    Returns
    -------
    dict[str, float]
        e.g. ``{"g_loss": ..., "d_loss": ..., "g_adv": ..., "d_real": ..., "d_fake": ...}``.
    """
    if isinstance(output, (list, tuple)):
        output = output[0] if output else {}
    if not isinstance(output, Mapping):
        return {}
    out: dict[str, float] = {}
    for key, value in output.items():
        if isinstance(value, bool):
            continue
        if isinstance(value, Number):
            out[str(key)] = float(value)  # type: ignore[arg-type]
        elif isinstance(value, torch.Tensor) and value.numel() == 1:
            out[str(key)] = float(value.detach().item())
    return out
