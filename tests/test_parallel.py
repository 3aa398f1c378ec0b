"""crystensor.parallel: the ordered fork pool behind predict and featurize."""

from __future__ import annotations

import logging
import os

import pytest

from crystensor.parallel import ForkPool, fork_map

PARENT = os.getpid()


def square_where(state: int, task: int) -> tuple[int, int]:
    logging.getLogger("crystensor.test").warning("task %d", task)
    return state * task * task, os.getpid()


def dies_on_seven(state: int, task: int) -> int:
    if task == 7 and os.getpid() != PARENT:
        os._exit(3)
    return state + task


@pytest.mark.parametrize("processes", [1, 2])
def test_results_in_order_and_logs_forwarded(processes, caplog):
    with caplog.at_level(logging.WARNING, logger="crystensor.test"):
        with ForkPool(square_where, 3, processes) as pool:
            out = list(pool.map(range(40), window=7, chunksize=3))
    assert [task for task, _ in out] == list(range(40))
    assert [value for _, (value, _) in out] == [3 * t * t for t in range(40)]
    pids = {pid for _, (_, pid) in out}
    assert (pids == {os.getpid()}) if processes == 1 else (os.getpid() not in pids)
    assert [r.getMessage() for r in caplog.records] == [f"task {t}" for t in range(40)]


def test_a_dying_worker_leaves_the_rest_to_this_process():
    with ForkPool(dies_on_seven, 100, 2) as pool:
        out = list(pool.map(range(20), window=4))
    assert out == [(t, 100 + t) for t in range(20)]
    partial = list(fork_map(dies_on_seven, 100, list(range(20)), 2))
    assert partial == [(t, 100 + t) for t in range(len(partial))] and len(partial) < 20


def test_an_error_in_the_function_propagates():
    def boom(state, task):
        raise ValueError(f"bad task {task}")

    with pytest.raises(ValueError, match="bad task 0"), ForkPool(boom, None, 1) as pool:
        list(pool.map([0]))
