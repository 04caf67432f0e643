"""iceberg.py without a catalog: releasing pyiceberg's shared thread pool."""

from __future__ import annotations

import threading

import pytest

pytest.importorskip("pyiceberg")

from pyiceberg.utils.concurrent import ExecutorFactory

from cratedb_airflow_export.iceberg import released


def test_the_shared_pool_is_shut_down_by_the_last_block_out_only():
    """Two commits in one process: the first to finish must not shut the pool down under the other
    (its next submit failed with "cannot schedule new futures after shutdown")."""
    inside, leave = threading.Event(), threading.Event()
    seen: list[object] = []

    def other_commit() -> None:
        with released():
            pool = ExecutorFactory.get_or_create()
            inside.set()
            leave.wait(10)
            seen.append(pool.submit(lambda: "done").result())

    thread = threading.Thread(target=other_commit)
    thread.start()
    assert inside.wait(10)
    with released():
        ExecutorFactory.get_or_create().submit(lambda: None).result()
    assert ExecutorFactory._instance is not None  # the other commit is still inside
    leave.set()
    thread.join(10)
    assert seen == ["done"]
    assert ExecutorFactory._instance is None  # the last one out shut it down
