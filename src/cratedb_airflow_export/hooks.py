"""CrateDBHook: the seed's ``cratedb_connection`` (a postgresql:// URI) as a psycopg 3 connection.

CrateDB speaks the PostgreSQL wire protocol but has no transactions: no ROLLBACK, so the
connection is always in autocommit mode. OBJECT arrives as JSON (OID 114) and is decoded by
psycopg; geo_point arrives as ``point`` (OID 600) and is decoded to ``[lon, lat]`` like COPY TO writes it.
"""

from __future__ import annotations

import logging
from typing import Any

from airflow.providers.postgres.hooks.postgres import PostgresHook
from psycopg.adapt import Loader

from cratedb_airflow_export.sql import Statement

log = logging.getLogger(__name__)

POINT_OID = 600


class PointLoader(Loader):
    """``(x,y)`` -> ``[x, y]``."""

    def load(self, data: Any) -> list[float]:
        text = bytes(data).decode().strip("()")
        x, y = text.split(",")
        return [float(x), float(y)]


class CrateDBHook(PostgresHook):
    conn_name_attr = "cratedb_conn_id"
    default_conn_name = "cratedb_connection"
    conn_type = "postgres"
    hook_name = "CrateDB"

    def get_conn(self) -> Any:
        conn = super().get_conn()
        conn.autocommit = True
        conn.adapters.register_loader(POINT_OID, PointLoader)
        return conn


def run_statement(cursor: Any, statement: Statement) -> Any:
    """Execute one statement, logging its wire text with secrets redacted."""
    log.info("Running: %s", statement.describe())
    cursor.execute(statement.sql, statement.bind())
    return cursor
