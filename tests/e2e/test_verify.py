"""``cratedb-export verify`` and the example consumer, against real exports on each store's real server
(S3, Azurite, fake-gcs-server)."""

from __future__ import annotations

import json
import uuid
from datetime import date

import psycopg
import pytest
from devtools.devstack import create_metrics, sample_metrics

from cratedb_airflow_export.cli import main
from cratedb_airflow_export.config import TableExport
from cratedb_airflow_export.edge.consumer import manifest_at, summarize
from cratedb_airflow_export.export import run_export
from cratedb_airflow_export.windows import Window
from tests.helpers import SAMPLE_DAYS

pytestmark = pytest.mark.e2e
DAY = date(2024, 1, 4)


@pytest.fixture
def exported(postgres, connections, lake, tmp_path):
    name = f"doc.v_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(postgres.url, autocommit=True) as conn:
        create_metrics(conn, sample_metrics(SAMPLE_DAYS, 50, seed=3), table=name)
    entry = {"table": name, "timestamp_column": "timestamp", "engine": "stream", "target": lake.target()}
    config = tmp_path / "exports.yaml"
    config.write_text(json.dumps({"tables": [entry]}))
    result = run_export(TableExport.model_validate(entry), Window.for_day(DAY))
    return name, config, result, f"lake/{name}/dt=2024-01-04"


def verify(config, name, *extra):
    return main(["verify", "--table", name, "--date", "2024-01-04", "--config", str(config), *extra])


def test_verify_ok(exported, capsys):
    name, config, result, folder = exported
    assert verify(config, name) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == f"OK: {result.job.location.scheme}://{result.job.location.bucket}/{folder}/"
    assert "manifest: 50 rows in 1 object(s), engine stream" in out
    assert "source count(*) over the window: 50 = manifest rows" in out


def test_verify_detects_tampering(exported, lake, postgres, capsys):
    name, config, result, folder = exported
    bucket = result.job.location.bucket
    store = lake.store
    store.put(bucket, f"{folder}/part-00000.jsonl.gz", b"truncated")
    store.put(bucket, f"{folder}/stray.json", b"{}")
    with psycopg.connect(postgres.url, autocommit=True) as conn:
        conn.execute(f"DELETE FROM {name} WHERE \"timestamp\" = '2024-01-04T00:00:00+00:00'")
    assert verify(config, name) == 1
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith("FAILED: ")
    assert f"! {folder}/part-00000.jsonl.gz: size/ETag 9/" in out
    assert f"! data objects not in the manifest: ['{folder}/stray.json']" in out
    assert "! source count(*) over the window is 49, the manifest says 50" in out
    store.delete(bucket, [f"{folder}/_SUCCESS"])
    assert verify(config, name, "--no-source") == 1
    assert "! _SUCCESS is missing: the partition is incomplete or being replaced" in capsys.readouterr().out


def test_verify_missing_partition_and_unknown_table(exported, capsys):
    name, config, _, _ = exported
    assert main(["verify", "--table", name, "--date", "2024-01-05", "--config", str(config), "--no-source"]) == 1
    out = capsys.readouterr().out
    assert "! _SUCCESS is missing" in out and "! _manifest.json is missing" in out
    assert verify(config, "doc.unknown") == 2
    assert "not configured: doc.unknown" in capsys.readouterr().err


def test_consumer_reads_the_manifest(exported):
    name, _, result, folder = exported
    manifest = manifest_at(result.as_dict()["manifest"])
    assert summarize(manifest) == {
        "table": name,
        "interval": {"start": "2024-01-04T00:00:00+00:00", "end": "2024-01-05T00:00:00+00:00"},
        "rows": 50,
        "objects": [f"{folder}/part-00000.jsonl.gz"],
        "run_id": None,
    }


def test_verify_every_table_over_days_prints_one_line_per_partition(postgres, connections, lake, tmp_path, capsys):
    """After an incident: every configured table, a range of days, one line per partition, exit 1
    when any is not complete."""
    names = [f"doc.w_{uuid.uuid4().hex[:8]}" for _ in range(2)]
    entries = [
        {"table": name, "timestamp_column": "timestamp", "engine": "stream", "target": lake.target()} for name in names
    ]
    with psycopg.connect(postgres.url, autocommit=True) as conn:
        for name in names:
            create_metrics(conn, sample_metrics(SAMPLE_DAYS, 20, seed=5), table=name)
    config = tmp_path / "exports.yaml"
    config.write_text(json.dumps({"tables": entries}))
    for entry, days in ((entries[0], SAMPLE_DAYS), (entries[1], SAMPLE_DAYS[:2])):  # the second misses a day
        for day in days:
            run_export(TableExport.model_validate(entry), Window.for_day(day))
    every_day = ["verify", "--date", "2024-01-03", "--to", "2024-01-05", "--config", str(config), "--no-source"]

    def states() -> tuple[int, list[str]]:
        code = main(every_day)
        return code, capsys.readouterr().out.splitlines()

    code, lines = states()
    complete = "complete: manifest: 20 rows in 1 object(s), engine stream, exported "
    assert code == 1
    for line, day in zip(lines[:3], ("2024-01-03", "2024-01-04", "2024-01-05"), strict=True):
        assert line.startswith(f"{names[0]} {day} {complete}")
    assert lines[3].startswith(f"{names[1]} 2024-01-03 {complete}")
    assert lines[4].startswith(f"{names[1]} 2024-01-04 {complete}")
    assert lines[5:] == [f"{names[1]} 2024-01-05 missing"]

    broken = f"lake/{names[0]}/dt=2024-01-04/part-00000.jsonl.gz"
    lake.store.put(lake.bucket, broken, b"truncated")
    code, lines = states()
    assert code == 1 and len(lines) == 6
    assert lines[1].startswith(f"{names[0]} 2024-01-04 failed: {broken}: size/ETag 9/")
    assert [line.split(" ")[2].rstrip(":") for line in lines] == [
        "complete",
        "failed",
        "complete",
        "complete",
        "complete",
        "missing",
    ]

    only = ["verify", "--date", "2024-01-03", "--to", "2024-01-04", "--table", names[1], "--config", str(config)]
    assert main(only) == 0  # with the source's count(*) too
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in lines] == [
        f"{names[1]} 2024-01-03 complete",
        f"{names[1]} 2024-01-04 complete",
    ]


@pytest.mark.parametrize("reader", ["auto", "cursor"])
def test_a_parquet_partition_with_arrays_verifies(postgres, connections, lake, tmp_path, capsys, reader):
    """Arrow calls a list's item ``item``, the Parquet files pyarrow writes ``element``: no reader
    sees the name, and verify compares the types as readers see them (it reported every such
    partition FAILED, so retention could never purge it)."""
    name = f"doc.arrays_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(postgres.url, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA IF NOT EXISTS doc")
        conn.execute(f"CREATE TABLE {name} (id INT, ts TIMESTAMPTZ, tags TEXT[], nested INT[])")
        conn.execute(f"INSERT INTO {name} VALUES (1, '2024-01-04 12:00:00+00', ARRAY['a', NULL], ARRAY[1, 2])")
    entry = {"table": name, "timestamp_column": "ts", "engine": "stream", "format": "parquet", "reader": reader}
    cfg = TableExport.model_validate({**entry, "target": lake.target()})
    run_export(cfg, Window.for_day(date(2024, 1, 4)))
    config_file = tmp_path / "exports.yaml"
    config_file.write_text(json.dumps({"tables": [cfg.model_dump(mode="json", exclude_defaults=True)]}))
    assert verify(str(config_file), name) == 0, capsys.readouterr().out
    assert "OK: " in capsys.readouterr().out
