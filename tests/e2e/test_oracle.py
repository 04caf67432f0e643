"""The oracle (tests/oracle.py) against the local PostgreSQL and S3 server: random sequences of source
changes, exports, reruns, reconciles, purges, restores, verifies and tampering, each step in a random
process (and session) time zone, the invariants checked after every step.

``make test`` runs a bounded number of sequences (ORACLE_EXAMPLES, default 6, of up to
ORACLE_STEPS, default 30, steps); ``make test-deep`` many more, and the planted bugs of
tests/e2e/test_oracle_plants.py, each of which the oracle must find.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, Phase, settings

from tests.oracle import ArchiveOracle, IcebergOracle, run

pytestmark = pytest.mark.e2e

EXAMPLES = int(os.environ.get("ORACLE_EXAMPLES", "6"))
STEPS = int(os.environ.get("ORACLE_STEPS", "30"))


def oracle_settings(examples: int = EXAMPLES, steps: int = STEPS, *, shrink: bool = True) -> settings:
    return settings(
        max_examples=examples,
        stateful_step_count=steps,
        deadline=None,
        database=None,  # nothing written into the checkout; a failure prints the steps and a seed
        print_blob=True,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.explicit, Phase.generate, *([Phase.shrink] if shrink else [])],
    )


def test_nothing_lost_nothing_wrong_under_any_clock(oracle_setting):
    run(oracle_setting, ArchiveOracle, oracle_settings())


def test_the_cursor_path_reads_every_row_once(oracle_cursor_setting):
    """The machine on the cursor path CrateDB sources take: sub-windows shared by several
    connections, FETCHes sized by the read's budget."""
    run(oracle_cursor_setting, ArchiveOracle, oracle_settings(max(2, EXAMPLES // 3), STEPS))


def test_the_fetch_phase_reads_every_row_once(oracle_fetch_phase_setting):
    """The machine on CrateDB's default path: sub-windows cut by a histogram of the window's rows,
    each declared with a LIMIT, dealt to three connections."""
    run(oracle_fetch_phase_setting, ArchiveOracle, oracle_settings(max(2, EXAMPLES // 3), STEPS))


def test_nothing_lost_nothing_wrong_on_azure_and_gcs(oracle_other_store_setting):
    """The same machine with the archive in Azure Blob Storage (Azurite) or Google Cloud Storage
    (fake-gcs-server): publish, the lease, verify, tampering, purge and restore on each store."""
    run(oracle_other_store_setting, ArchiveOracle, oracle_settings(max(2, EXAMPLES // 3), STEPS))


def test_iceberg_days_are_never_seen_empty_or_half(oracle_iceberg_setting):
    run(oracle_iceberg_setting, IcebergOracle, oracle_settings(max(2, EXAMPLES // 2), STEPS))


def test_iceberg_days_on_azure_and_gcs(oracle_other_iceberg_setting):
    """The Iceberg machine with the table's files in Azurite or fake-gcs-server, read back by
    pyiceberg's own file IO."""
    run(oracle_other_iceberg_setting, IcebergOracle, oracle_settings(2, STEPS))
