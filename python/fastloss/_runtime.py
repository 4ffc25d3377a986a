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
