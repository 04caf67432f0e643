"""The shipped DAG file and config, and the ``cratedb-export plan`` command."""

from __future__ import annotations

import io
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from cratedb_sqlparse import sqlparse

from cratedb_airflow_export.cli import COMMANDS, build_parser, main
from tests.helpers import REPO

CLI = str(Path(sys.executable).parent / "cratedb-export")


def test_plan_json_for_the_shipped_config():
    proc = subprocess.run(
        [CLI, "plan", "--date", "2024-01-04", "--json"], cwd=REPO, capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr
    plan = json.loads(proc.stdout)
    assert plan["interval"] == {"start": "2024-01-04T00:00:00+00:00", "end": "2024-01-05T00:00:00+00:00"}
    (table,) = plan["tables"]
    assert table["table"] == "doc.metrics"
    assert table["engine"] == "copy"
    assert table["interval"] == plan["interval"]
    assert table["target"] == "s3://crate-astro-tutorial/metrics-2024-01-04/"
    assert table["statements"][-4:] == [
        'REFRESH TABLE "doc"."metrics"',
        'COPY "doc"."metrics" WHERE "timestamp" >= $1 AND "timestamp" < $2 TO DIRECTORY $3 '
        "WITH (compression = 'gzip', format = 'json_object', wait_for_completion = true)",
        'SELECT count(*), sum("_cratedb_export_row_version") FROM (SELECT _seq_no AS "_cratedb_export_row_version", '
        '* FROM "doc"."metrics" WHERE "timestamp" >= $1 AND "timestamp" < $2) AS "window_rows"',
        # the table's identity, recorded in the manifest (a table created again under the name has another)
        "SELECT DISTINCT partition_ident, partition_uuid FROM sys.shards WHERE schema_name = $1 AND table_name = $2",
    ]
    assert table["parameters"][-3] == [
        "2024-01-04T00:00:00+00:00",
        "2024-01-05T00:00:00+00:00",
        "s3://<access_key>:<secret_key>@crate-astro-tutorial/_cratedb_export_staging/metrics-2024-01-04/<attempt>",
    ]
    for statement in table["statements"]:
        assert sqlparse(statement, raise_exception=False)[0].exception is None


def test_plan_redacts_a_configured_secret_and_uses_the_endpoint(tmp_path, monkeypatch, capsys):
    secret = "Plan/Secret+Key=1"
    extra = {"endpoint_url": "http://127.0.0.1:9000"}
    monkeypatch.setenv(
        "AIRFLOW_CONN_AWS_DEFAULT", json.dumps({"conn_type": "aws", "login": "AK", "password": secret, "extra": extra})
    )
    config = tmp_path / "c.yaml"
    config.write_text("tables: [{table: doc.metrics, timestamp_column: ts, target: 's3://lake/x'}]\n")
    assert main(["plan", "--date", "2024-01-04", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert secret not in out and "Plan%2FSecret" not in out
    assert "protocol = 'http'" in out
    assert (
        "$3 = s3://<access_key>:<secret_key>@127.0.0.1:9000/lake/_cratedb_export_staging/x/doc.metrics/dt=2024-01-04/"
        "<attempt>" in out
    )
    assert "target: s3://lake/x/doc.metrics/dt=2024-01-04/" in out


def test_plan_errors(tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text("tables: [{table: doc.metrics, target: 's3://lake/x'}]\n")
    assert main(["plan", "--date", "2024-01-04", "--config", str(config)]) == 2
    assert "field 'timestamp_column': Field required" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        main(["plan", "--date", "04.01.2024"])
    assert exit_.value.code == 2
    assert "'04.01.2024' is not a date in the form YYYY-MM-DD" in capsys.readouterr().err


def test_plan_single_table(tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text(
        "tables: [{table: doc.a, timestamp_column: ts, target: 's3://lake/x'},"
        " {table: doc.b, timestamp_column: ts, target: 's3://lake/x', engine: stream}]\n"
    )
    assert main(["plan", "--date", "2024-01-04", "--config", str(config), "--table", "b", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert [t["table"] for t in plan["tables"]] == ["doc.b"]
    declares = [t for t in plan["tables"][0]["statements"] if t.startswith("DECLARE")]
    # no source to ask for its processors: 4 connections, 4 sub-windows each
    assert [d.split(" ", 2)[1] for d in declares] == [f'"cratedb_export_{n}"' for n in range(16)]
    assert all(" NO SCROLL CURSOR WITH HOLD FOR " in d for d in declares)
    assert main(["plan", "--date", "2024-01-04", "--config", str(config), "--table", "doc.zzz"]) == 2


def test_plan_json_stays_valid_when_airflow_logs(tmp_path):
    """Airflow logs to stdout when it reads a connection; --json output must not be corrupted."""
    env = {
        **os.environ,
        "AIRFLOW_CONN_AWS_DEFAULT": "aws://AKIA:Long%2FSecret%2BKey@/?endpoint_url=http%3A%2F%2F127.0.0.1%3A9000",
    }
    proc = subprocess.run(
        [CLI, "plan", "--date", "2024-01-04", "--json"], cwd=REPO, capture_output=True, text=True, env=env, check=False
    )
    assert proc.returncode == 0, proc.stderr
    plan = json.loads(proc.stdout)
    assert "protocol = 'http'" in plan["tables"][0]["statements"][-3]
    assert "Long/Secret" not in proc.stdout and "Long%2FSecret" not in proc.stdout


def test_plan_shows_what_the_retention_run_of_the_day_deletes(tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text("tables: [{table: doc.metrics, timestamp_column: ts, target: 's3://lake/x', retain_days: 30}]\n")
    assert main(["plan", "--date", "2024-03-01", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert "  retention: keep 30 days, delete the days before 2024-02-01\n" in out
    assert '    DELETE FROM "doc"."metrics" WHERE "ts" >= $1 AND "ts" < $2\n' in out
    assert "       $1 = 2024-01-31T00:00:00+00:00\n       $2 = 2024-02-01T00:00:00+00:00\n" in out
    assert "cratedb-export purge --table doc.metrics --before 2024-02-01 --dry-run" in out


def test_version_prints_the_installed_version_and_exits_0(capsys):
    from importlib.metadata import version

    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out == f"cratedb-export {version('cratedb-airflow-export')}\n"


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_says_what_it_does_its_exit_codes_and_an_example_that_parses(command, capsys):
    description, failed, example = COMMANDS[command]
    with pytest.raises(SystemExit) as done:
        main([command, "--help"])
    assert done.value.code == 0
    shown = " ".join(capsys.readouterr().out.split())  # on stdout, rewrapped
    assert " ".join(description.split()) in shown
    unusable = "bad arguments or configuration" + (
        ", or a partition could not be checked (connections, S3)" if command == "verify" else ""
    )
    assert f"exit codes: 0 done; 1 {failed}; 2 {unusable}" in shown
    assert f"example: {example}" in shown
    argv = shlex.split(example)
    assert argv[0] == "cratedb-export"
    assert build_parser(io.StringIO()).parse_args(argv[1:]).command == command
