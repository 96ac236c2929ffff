"""One device mesh with axes ('data', 'model'), and logical-axis → mesh-axis rules for params.

Params carry logical axis names (`vocab`, `embed`, `heads`, `mlp`, `head_*`); `DEFAULT_RULES` maps
them to mesh axes: the wide matrices split over 'model', everything else replicated. Batches split
their first axis over 'data'.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from relik_jax.core.errors import ConfigError

AXES = ("data", "model")
DEFAULT_RULES: tuple[tuple[str, str | None], ...] = (
    ("vocab", "model"),
    ("heads", "model"),
    ("mlp", "model"),
    ("embed", None),
    ("embed_in", None),
    ("head_in", None),
    ("head_hidden", "model"),
    ("head_out", None),
)


def make_mesh(shape: Mapping[str, int] | Sequence[int] = (-1, 1), devices: Sequence[Any] | None = None) -> Mesh:
    """A ('data', 'model') mesh; one dimension may be -1 (all remaining devices)."""
    devices = list(devices) if devices is not None else jax.devices()
    return Mesh(np.asarray(devices).reshape(mesh_dims(shape, len(devices))), AXES)


def mesh_dims(shape: Mapping[str, int] | Sequence[int], n_devices: int) -> list[int]:
    """The ('data', 'model') sizes of a mesh shape over `n_devices` (its -1 filled in); `ConfigError`
    when the shape does not fit the devices."""
    dims = [shape.get(a, 1) for a in AXES] if isinstance(shape, Mapping) else list(shape)
    if len(dims) != 2:
        raise ConfigError(f"the mesh has axes {AXES}: give 2 sizes, got {dims}")
    if dims.count(-1) > 1:
        raise ConfigError(f"at most one mesh dimension may be -1, got {dims}")
    known = int(np.prod([d for d in dims if d != -1]))
    if -1 in dims:
        if n_devices % known:
            raise ConfigError(f"{n_devices} devices do not split into a mesh of {dims}")
        dims[dims.index(-1)] = n_devices // known
    if int(np.prod(dims)) != n_devices:
        raise ConfigError(f"a {dims[0]}x{dims[1]} mesh needs {int(np.prod(dims))} devices, there are {n_devices}")
    return dims


def logical_shardings(abstract_tree: Any, mesh: Mesh, rules: Sequence[tuple[str, str | None]] = DEFAULT_RULES) -> Any:
    """NamedShardings of a (boxed, abstract) tree (params, a train state) from its logical axis names."""
    specs = nn.get_partition_spec(abstract_tree)
    shardings = nn.logical_to_mesh_sharding(specs, mesh, list(rules))
    return _with_shapes(lambda s, a: divisible(s, a.shape), shardings, nn.unbox(abstract_tree))


def _with_shapes(fn, shardings: Any, abstract: Any) -> Any:
    """`fn(sharding, array)` for each sharding of a tree and the abstract array in its place (an
    empty node there, such as optax's `MaskedNode` of a frozen leaf, keeps its sharding)."""
    return jax.tree.map(
        lambda s, a: fn(s, a) if hasattr(a, "shape") else s,
        shardings,
        abstract,
        is_leaf=lambda x: isinstance(x, NamedSharding),
    )


def divisible(sharding: NamedSharding, shape: Sequence[int]) -> NamedSharding:
    """`sharding` with every dimension its mesh axes do not divide evenly left whole (e.g. a
    vocabulary of 30,547 rows on a 2-way 'model' axis is replicated rather than refused)."""
    spec = list(sharding.spec) + [None] * (len(shape) - len(sharding.spec))
    mesh = sharding.mesh
    changed = False
    for i, p in enumerate(spec):
        if p is None:
            continue
        size = int(np.prod([mesh.shape[a] for a in (p if isinstance(p, tuple) else (p,))]))
        if shape[i] % size:
            spec[i], changed = None, True
    return NamedSharding(mesh, PartitionSpec(*spec)) if changed else sharding


def batch_sharding(mesh: Mesh, ndim: int = 1) -> NamedSharding:
    """First axis over 'data', the rest replicated."""
    return NamedSharding(mesh, PartitionSpec("data", *([None] * (ndim - 1))))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def shard_batch(
    batch: Mapping[str, np.ndarray], mesh: Mesh, replicated_keys: Sequence[str] = ()
) -> dict[str, jax.Array]:
    """Places a host batch on the mesh, split along 'data' (its first axis must divide); the
    `replicated_keys` fields (the same on every host, e.g. a batch's shared passages) are replicated."""
    n = mesh.shape["data"]
    out = {}
    for k, v in batch.items():
        v = np.asarray(v)
        if v.ndim == 0 or k in replicated_keys:
            out[k] = jax.device_put(v, replicated(mesh))
            continue
        if v.shape[0] % n:
            raise ConfigError(f"batch field {k!r} has {v.shape[0]} rows, not divisible by the data axis ({n})")
        out[k] = (
            jax.make_array_from_process_local_data(batch_sharding(mesh, v.ndim), v)
            if jax.process_count() > 1
            else jax.device_put(v, batch_sharding(mesh, v.ndim))
        )
    return out


def fsdp_shardings(shardings: Any, abstract: Any, mesh: Mesh, *, axis: str = "data", min_size: int = 1 << 16) -> Any:
    """FSDP / ZeRO-3: every array of at least `min_size` elements is also split over `axis` along
    its largest dimension that is not split yet and divides evenly (a parameter and its optimizer
    moments the same way); XLA gathers a layer's weights when it runs and reduce-scatters the
    gradients. Smaller arrays (biases, norms) stay as they were."""
    n = mesh.shape[axis]

    def one(a, s: NamedSharding) -> NamedSharding:
        if n == 1 or int(np.prod(a.shape)) < min_size:
            return s
        spec = list(s.spec) + [None] * (len(a.shape) - len(s.spec))
        if any(axis == p or (isinstance(p, tuple) and axis in p) for p in spec):
            return s
        free = [i for i, p in enumerate(spec) if p is None and a.shape[i] % n == 0]
        if not free:
            return s
        i = max(free, key=lambda k: a.shape[k])
        spec[i] = axis
        return NamedSharding(mesh, PartitionSpec(*spec))

    return _with_shapes(lambda s, a: one(a, s), shardings, abstract)
