"""One ordered pool of forked processes, for work that shares a large loaded state.

:func:`fork_map` runs ``function(state, task)`` for each task in processes forked from this one,
so ``state`` (a loaded model, a configuration) is inherited rather than pickled, and yields the
results in task order as they complete. Each process runs one torch thread and keeps freed
memory (:func:`keep_freed_memory`); what it logs is sent back and logged here, in order, under
the original logger names. If the processes cannot start or one dies, the iteration stops
early: the caller does the tasks not yet returned itself.

Forking is safe here because the parent has not started torch's thread pool work in the
children's way (each child sets one thread before doing anything) and the only open files that
matter (HDF5 readers) are closed before the fork by
:data:`crystensor.data.store.OPEN_READERS` users.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

__all__ = ["available_cores", "fork_map", "keep_freed_memory"]

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

# (function, state) of the running fork_map, set just before the processes fork
_WORK: tuple[Callable[[Any, Any], Any], Any] | None = None
_LOCK = threading.Lock()


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity), at least 1."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def can_fork() -> bool:
    """Forking is used on Linux only, and not inside a daemon process (no children allowed)."""
    import multiprocessing

    return sys.platform == "linux" and not multiprocessing.current_process().daemon


def keep_freed_memory() -> None:
    """Let glibc's malloc keep freed memory for the next batch instead of returning it.

    Each batch allocates a few MB of tensors; by default glibc maps blocks that large afresh
    and unmaps them when freed, so every batch page-faults its memory in again (~600 minor
    faults per structure with the shipped elastic SEGNN, 1 with these settings). Only in
    processes crystensor owns (the forked ones), and only with glibc.
    """
    import ctypes
    import platform

    if platform.libc_ver()[0] != "glibc":
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    m_trim_threshold, m_top_pad, m_mmap_threshold = -1, -2, -3
    libc.mallopt(m_mmap_threshold, 32 << 20)  # glibc's largest allowed
    libc.mallopt(m_trim_threshold, 512 << 20)
    libc.mallopt(m_top_pad, 64 << 20)


class _Collected(logging.Handler):
    """Keeps the records a forked process logs, to send them to the parent."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        record.msg, record.args = record.getMessage(), None  # arguments may not pickle
        record.exc_info = None
        self.records.append(record)


_COLLECTED = _Collected()


def _start_forked() -> None:
    """In a forked process: one torch thread, freed memory kept, logging kept for the parent."""
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)
    keep_freed_memory()
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.addHandler(_COLLECTED)


def _run_forked(task: Any) -> tuple[Any, list[logging.LogRecord]]:
    """In a forked process: ``function(state, task)`` and what it logged."""
    if _WORK is None:  # not forked from a process running fork_map
        raise RuntimeError("no work in this process")
    _COLLECTED.records = []
    function, state = _WORK
    return function(state, task), _COLLECTED.records


def fork_map(
    function: Callable[[Any, T], R], state: Any, tasks: Sequence[T], processes: int
) -> Iterator[tuple[T, R]]:
    """``(task, function(state, task))`` for each task, in order, computed in forked processes.

    Parameters
    ----------
    function : callable
        Called in a child as ``function(state, task)``; its result must pickle.
    state : object
        What the children inherit (it is not pickled).
    tasks : sequence
        Must pickle (small: indices, chunks of indices).
    processes : int
        Number of processes, at least 1.

    Yields
    ------
    (task, result)
        In task order. The iteration ends early, without raising, when the processes cannot
        be started or one dies (logged at debug level); the caller handles the tasks not
        yielded. An exception raised by ``function`` itself propagates.
    """
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    global _WORK
    with _LOCK:
        _WORK = (function, state)
        pool = None
        try:
            pool = ProcessPoolExecutor(
                processes, multiprocessing.get_context("fork"), initializer=_start_forked
            )
            for task, (result, records) in zip(tasks, pool.map(_run_forked, tasks), strict=True):
                for record in records:
                    logging.getLogger(record.name).handle(record)
                yield task, result
        except (BrokenProcessPool, OSError) as err:
            log.debug("the worker processes failed (%r); the rest is done here", err)
        finally:
            # on an interrupt too: the tasks not started are dropped, not waited for
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)
            _WORK = None
