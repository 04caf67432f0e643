"""Connections through Airflow: what a task says when Airflow drops a connection it cannot read."""

from __future__ import annotations

import pytest


def test_a_connection_airflow_cannot_read_says_which_part_to_percent_encode(monkeypatch):
    from cratedb_airflow_export.edge.resolve import airflow_connection
    from cratedb_airflow_export.errors import CredentialsError

    monkeypatch.setenv("AIRFLOW_CONN_BROKEN_AWS", "aws://AKIA:ab/cd@/?region_name=eu-central-1")
    said = r"connection 'broken_aws': the password \(secret\) in its URI holds '/'"
    with pytest.raises(CredentialsError, match=said):
        airflow_connection("broken_aws")  # Airflow itself only says the connection is not defined
    monkeypatch.setenv("AIRFLOW_CONN_BROKEN_AWS", "aws://AKIA:ab%2Fcd@/?region_name=eu-central-1")
    fixed = airflow_connection("broken_aws")
    assert fixed is not None and (fixed.login, fixed.password) == ("AKIA", "ab/cd")
    assert airflow_connection("not_defined_anywhere") is None
