"""Threads, SIMD target selection and build information."""

from __future__ import annotations

import contextlib
import os
from typing import Any, Dict, Iterator

from . import _core
from ._version import __version__


def get_num_threads() -> int:
    """Threads the kernels use.

    Until :func:`set_num_threads` is called: OpenMP's count for the calling thread, i.e.
    ``OMP_NUM_THREADS`` or the core count, or the limit of an active
    ``threadpoolctl.threadpool_limits``.
    """
    return _core.get_num_threads()


def set_num_threads(n: int) -> None:
    """Sets the number of threads every kernel uses, from 1 to ``fastloss._core.max_threads``
    (256: the most one call runs). Results do not depend on it (bitwise)."""
    _core.set_num_threads(_check_count(n))


def _check_count(n: int) -> int:
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"n must be an int; got {type(n).__name__}")
    if not 1 <= n <= _core.max_threads:
        raise ValueError(f"n must lie in [1, {_core.max_threads}]; got {n}")
    return n


@contextlib.contextmanager
def num_threads(n: int) -> Iterator[None]:
    """``with fastloss.num_threads(1): ...``: the calling Python thread's calls use ``n`` threads
    inside the block; other Python threads, and the count set by ``set_num_threads``, are
    untouched (contexts nest, and restore on exit)."""
    previous = _core.swap_thread_num_threads(_check_count(n))
    try:
        yield
    finally:
        _core.swap_thread_num_threads(previous)


def set_buffer_cache(max_bytes: int) -> int:
    """Sets how many bytes of freed memory fastloss keeps for reuse; returns the previous limit.

    Arrays fastloss returns from 1 MiB on (``fastloss._core.cached_block_min``), and its kernels'
    large scratch, live in blocks that go back to this cache when freed, so that the next call of
    a similar size reuses them. Fresh memory from the system costs a page fault and a zeroed page
    per 4 KiB on first touch: MSE value + gradient of 10^7 float64 into a fresh NumPy array takes
    about three times as long as into a reused one. The cache keeps the most recently freed blocks
    up to ``max_bytes`` (default 512 MiB; at most 32 blocks) and frees the rest; 0 frees every
    block at once. Such arrays have a capsule as their ``base`` (``flags.owndata`` is False)."""
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, int):
        raise TypeError(f"max_bytes must be an int; got {type(max_bytes).__name__}")
    if not 0 <= max_bytes < 2 ** 63:
        raise ValueError(f"max_bytes must lie in [0, 2**63); got {max_bytes}")
    return _core.swap_block_cache_limit(max_bytes)


def buffer_cache_info() -> Dict[str, int]:
    """The cache of :func:`set_buffer_cache`: ``limit`` and ``held`` (bytes), ``blocks``."""
    limit, held, blocks = _core.block_cache_info()
    return {"limit": limit, "held": held, "blocks": blocks}


def select_isa(name: str) -> None:
    """Switches the SIMD target (``"baseline"``, ``"avx2"``, ``"avx512"``) for all later calls."""
    _core.select_isa(name)


def build_info() -> Dict[str, Any]:
    """Version, compiled and selected SIMD targets, OpenMP, compiler, threads."""
    info = dict(_core.build)
    info.update(
        version=__version__,
        isa_compiled=list(_core.compiled_isas()),
        isa_available=list(_core.available_isas()),
        isa_selected=_core.selected_isa(),
        num_threads=get_num_threads(),
        cuda=False,
    )
    try:
        from . import _cuda  # noqa: F401  (optional target)

        info["cuda"] = True
    except ImportError:
        pass
    return info


def _select_isa_from_environment() -> None:
    requested = os.environ.get("FASTLOSS_ISA", "").strip()
    if requested:
        try:
            _core.select_isa(requested)
        except ValueError as e:
            raise ImportError(f"FASTLOSS_ISA={requested!r}: {e}") from None
