"""Worker identity for the multi-worker check (tests/e2e/test_distributed.py).

Two Celery workers on one machine share its hostname, so each worker process is started with
``CRATEDB_EXPORT_WORKER_NAME`` and Airflow's ``[core] hostname_callable`` points here: the task
instances then record which worker ran them.
"""

from __future__ import annotations

import os
import socket


def worker_name() -> str:
    return os.environ.get("CRATEDB_EXPORT_WORKER_NAME") or socket.getfqdn()
