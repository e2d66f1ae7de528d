"""One copy of a batch function's large arrays for all the processes of a machine.

Engines that run a batch function in several processes, ``datasets.map(fn, num_proc=N)``,
datatrove's ``LocalPipelineExecutor(workers=N)`` or a ``multiprocessing`` pool, unpickle it in
each process, and each process reads its own model: N copies of a fastText classifier's input
matrix (2.3 GB at dim 256 with 2M buckets). :func:`share_arrays_on_machine` writes the arrays of
:meth:`~tokensieve.integrations.batch.BatchFunction.shareable_arrays` once to files in shared
memory (``/dev/shm``) for as long as its ``with`` block runs; every process that uses the
function inside the block maps them read-only instead of building its own::

    from tokensieve.integrations.batch import FastTextScores
    from tokensieve.integrations.machine import share_arrays_on_machine

    with share_arrays_on_machine(FastTextScores("hq.bin", "hq")) as fn:
        ds = ds.map(fn, batched=True, num_proc=16)

The files are named by the arrays' content (a fastText model's SHA-256), so equal functions
pickle to equal bytes and ``datasets``' cache still works. The model still reads its file and
checks that the shared floats equal it bit for bit. A process on another machine (a Slurm
executor), or one that starts after the block ended, does not find the files; it logs a warning
and builds its own copy, so results never depend on the sharing. Ray has its own object store:
:func:`tokensieve.integrations.ray.apply` shares through it (``share_arrays=True``).

Lifetime: the block deletes the files it wrote when it ends (processes that mapped them keep
their mapping). A file that already existed, from a concurrent block or a crashed run, is used
and left in place; such leftovers are the ``tokensieve-*`` files of the directory.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import numpy as np

from tokensieve.exceptions import InvalidArgumentError

if TYPE_CHECKING:
    from tokensieve.integrations.batch import BatchFunction

__all__ = ["SharedArray", "map_shared_arrays", "share_arrays_on_machine"]

logger = logging.getLogger(__name__)

#: Where the arrays go by default: Linux's shared memory file system.
DEFAULT_DIRECTORY = "/dev/shm"

Fn = TypeVar("Fn", bound="BatchFunction")


@dataclass(frozen=True)
class SharedArray:
    """Where one shared array lives: a file of its raw C-order bytes, with its shape and dtype
    (``numpy.dtype.str``). Pickles with the batch function."""

    name: str
    path: str
    shape: tuple[int, ...]
    dtype: str


@contextmanager
def share_arrays_on_machine(fn: Fn, directory: str | os.PathLike[str] = DEFAULT_DIRECTORY) -> Iterator[Fn]:
    """Puts ``fn``'s shareable arrays in files under ``directory`` (a shared memory file
    system) for the ``with`` block, and yields ``fn`` itself, now pickling with their locations:
    the processes that use it map them instead of building their own (module docstring). This
    process maps them too, releasing its own copy. A function without shareable arrays (a
    quantised fastText model, DSIR weights) is yielded unchanged.

    Raises :class:`~tokensieve.exceptions.InvalidArgumentError` when ``directory`` is not a
    directory or has no room for the arrays (a container's ``/dev/shm`` is often 64 MB).
    """
    folder = Path(directory)
    if not folder.is_dir():
        raise InvalidArgumentError(
            f"{folder} is not a directory (shared memory is {DEFAULT_DIRECTORY} on Linux)"
        )
    arrays = fn.shareable_arrays()
    if not arrays:
        yield fn
        return
    key = fn.shared_arrays_key()
    created: list[Path] = []
    try:
        shared = _publish_all(arrays, folder, key, created)
        del arrays  # this process's own copy goes once the function is rebuilt over the files
        fn._shared_on_machine = shared
        fn._attach_shared_on_machine()
        # Built here first: the file's pages go onto 2 MiB pages (memory.rs) once, before the
        # workers map them, rather than by several workers at once (which left more 4 KiB pages).
        fn.load()
        yield fn
    finally:
        fn.__dict__.pop("_shared_on_machine", None)  # pickles as before the block again
        for path in created:
            path.unlink(missing_ok=True)


def _publish_all(
    arrays: dict[str, np.ndarray], folder: Path, key: str, created: list[Path]
) -> tuple[SharedArray, ...]:
    """Writes each array that is not on the machine yet to its file (appending the files
    written to ``created``); returns where they all are."""
    needed = sum(a.nbytes for a in arrays.values())
    free = shutil.disk_usage(folder).free
    if needed > free:  # a container's /dev/shm is often 64 MB
        raise InvalidArgumentError(
            f"{folder} has {free / 1e6:.0f} MB free, the arrays to share need {needed / 1e6:.0f} MB "
            "(give the container more shared memory, e.g. docker run --shm-size, or pick another "
            "directory on a tmpfs)"
        )
    shared = []
    for name, array in arrays.items():
        shape = "x".join(map(str, array.shape))
        path = folder / f"tokensieve-{key}-{name}-{shape}-{array.dtype.name}"
        if not path.exists():
            _publish(np.ascontiguousarray(array), path)
            created.append(path)
        shared.append(SharedArray(name, str(path), tuple(array.shape), array.dtype.str))
    return tuple(shared)


def _publish(array: np.ndarray, path: Path) -> None:
    """Writes ``array`` to ``path`` atomically: a process sees all of it or no file."""
    partial = path.with_name(f"{path.name}.partial-{os.getpid()}")
    try:
        with open(partial, "wb") as f:
            array.tofile(f)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def map_shared_arrays(shared: tuple[SharedArray, ...]) -> Mapping[str, np.ndarray]:
    """The arrays of ``shared`` mapped read-only from their files, or none (with a warning)
    when a file is missing or of the wrong size: the caller then builds its own copy."""
    out: dict[str, np.ndarray] = {}
    for array in shared:
        try:
            out[array.name] = np.memmap(array.path, dtype=np.dtype(array.dtype), mode="r", shape=array.shape)
        except (OSError, ValueError) as e:
            logger.warning("%s is not shared on this machine (%s): building a copy of its own", array.name, e)
            return {}
    return out
