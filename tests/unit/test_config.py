"""Configuration: the tutorial's TABLES work unchanged; every invalid entry fails naming entry and field."""

from __future__ import annotations

import re
import sys
import textwrap
from pathlib import Path

import pytest

from cratedb_airflow_export.config import TableExport
from cratedb_airflow_export.errors import ConfigError
from cratedb_airflow_export.loading import DagSettings, load_tables, load_yaml_tables, parse_tables

ENTRY = {"table": "doc.metrics", "timestamp_column": "timestamp", "target_bucket": "crate-astro-tutorial/metrics"}


def test_tutorial_entry_works_unchanged_with_defaults():
    (cfg,) = parse_tables([ENTRY])
    assert cfg.qualified_name == "doc.metrics"
    assert (cfg.engine, cfg.compression, cfg.columns, cfg.filter) == ("copy", "gzip", None, None)
    assert (cfg.aws_conn_id, cfg.cratedb_conn_id) == ("aws_default", "cratedb_connection")
    assert cfg.task_id == "export_doc.metrics"


def test_table_without_schema_is_in_doc():
    (cfg,) = parse_tables([{**ENTRY, "table": "metrics"}])
    assert (cfg.schema_name, cfg.table_name, cfg.qualified_name) == ("doc", "metrics", "doc.metrics")


def test_all_optional_keys():
    (cfg,) = parse_tables(
        [
            {
                "table": "iot.readings",
                "timestamp_column": "ts",
                "target": "s3://lake/raw/",
                "engine": "stream",
                "compression": "none",
                "columns": ["ts", "sensor", "value"],
                "filter": "sensor LIKE 'a%' AND value > 0",
                "aws_conn_id": "aws_lake",
                "cratedb_conn_id": "cratedb_prod",
                "batch_size": 5000,
                "part_size_mb": 8,
            }
        ]
    )
    assert cfg.target == "s3://lake/raw"
    assert cfg.columns == ("ts", "sensor", "value")


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        (
            {**ENTRY, "bucket": "x"},
            "entry 0 (table 'doc.metrics'): field 'bucket': unknown key; allowed keys: table,",
        ),
        (
            {"table": "doc.metrics", "target_bucket": "b/p"},
            "entry 0 (table 'doc.metrics'): field 'timestamp_column': Field required",
        ),
        (
            {**ENTRY, "table": "doc.metrics.x"},
            "field 'table': table 'doc.metrics.x' must be 'schema.table' or 'table'",
        ),
        ({**ENTRY, "table": "doc.met-rics"}, "field 'table': table name part 'met-rics' is not a plain identifier"),
        ({**ENTRY, "table": 'doc."x"'}, "field 'table': table name part '\"x\"' is not a plain identifier"),
        (
            {**ENTRY, "timestamp_column": "ts; drop"},
            "field 'timestamp_column': timestamp_column 'ts; drop' is not a plain",
        ),
        ({**ENTRY, "engine": "fast"}, "field 'engine': Input should be 'copy' or 'stream'"),
        ({**ENTRY, "compression": "zip"}, "field 'compression': Input should be 'gzip', 'zstd', 'snappy' or 'none'"),
        (
            {**ENTRY, "compression": "zstd"},
            "field 'compression': 'zstd' is not available for jsonl with engine 'copy'",
        ),
        ({**ENTRY, "format": "parquet"}, "field 'format': 'parquet' needs engine 'stream'"),
        (
            {**ENTRY, "columns": ["hash_id"], "compression": "none"},
            "field 'compression': CrateDB's COPY TO with a column list fails writing uncompressed files to S3",
        ),
        ({**ENTRY, "format": "xml"}, "field 'format': Input should be 'jsonl', 'csv', 'parquet' or 'iceberg'"),
        (
            {**ENTRY, "engine": "stream", "format": "csv", "compression": "snappy"},
            "field 'compression': 'snappy' is not available for csv with engine 'stream'; choose one of gzip, none",
        ),
        ({**ENTRY, "engine": "stream", "parquet_row_group_size": 10}, "field 'parquet_row_group_size'"),
        (
            {**ENTRY, "engine": "stream", "file_size_mb": 50_000, "part_size_mb": 5},
            "field 'file_size_mb': files of 50000 MB in parts of 5 MB would need more than S3's 10,000 parts per "
            "object; set part_size_mb to at least 6 or lower file_size_mb",
        ),
        (
            {**ENTRY, "compression_level": 3},
            "field 'compression_level': jsonl with gzip compression and engine 'copy' has no levels to choose "
            "from; leave it out",
        ),
        (
            {**ENTRY, "engine": "stream", "compression": "zstd", "compression_level": 3},
            "field 'compression_level': jsonl with zstd compression and engine 'stream' has no levels",
        ),
        (
            {**ENTRY, "engine": "stream", "compression_level": 10},
            "field 'compression_level': 10 is not a gzip level (from 1 to 9)",
        ),
        (
            {**ENTRY, "engine": "stream", "format": "parquet", "compression_level": 23},
            "field 'compression_level': 23 is not a zstd level (from 1 to 22)",
        ),
        ({**ENTRY, "slices": 0}, "field 'slices': Input should be greater than or equal to 1"),
        ({**ENTRY, "slices": 65}, "field 'slices': Input should be less than or equal to 64"),
        ({**ENTRY, "columns": []}, "field 'columns': columns must not be empty"),
        ({**ENTRY, "columns": ["a", "a"]}, "field 'columns': columns lists a column twice"),
        ({**ENTRY, "columns": ["ok", "not ok"]}, "field 'columns': column 'not ok' is not a plain identifier"),
        ({**ENTRY, "filter": "1=1; DROP TABLE doc.metrics"}, "field 'filter': filter must be one SQL condition"),
        ({**ENTRY, "filter": "name = 'x' -- c"}, "field 'filter': filter must not contain SQL comments"),
        (
            {**ENTRY, "filter": "name = = 'x'"},
            "field 'filter': filter \"name = = 'x'\" does not parse as a CrateDB condition",
        ),
        ({**ENTRY, "filter": "1=1) OR (1=1"}, "field 'filter': filter '1=1) OR (1=1' has unbalanced parentheses"),
        ({**ENTRY, "filter": "name = ')' OR (1=1"}, "has unbalanced parentheses, brackets or quotes"),
        ({**ENTRY, "filter": "name = 'x"}, "an unterminated quote or a character CrateDB's SQL does not know"),
        (
            {**ENTRY, "target_bucket": "s3://b/p"},
            "field 'target_bucket': target_bucket is 'bucket/path' without 's3://'",
        ),
        (
            {**ENTRY, "target_bucket": "bucket-only"},
            "field 'target_bucket': target_bucket needs a path after the bucket",
        ),
        (
            {**ENTRY, "target_bucket": "Bad_Bucket/p"},
            "field 'target_bucket': 'Bad_Bucket' is not a valid S3 bucket name",
        ),
        ({**ENTRY, "target_bucket": "ok-bucket/a/../b"}, "has an empty, '.' or '..' segment"),
        (
            {**ENTRY, "target": "s3://b2b/p"},
            "field 'target': set exactly one of 'target_bucket' (tutorial layout) or 'target'",
        ),
        ({"table": "t", "timestamp_column": "ts"}, "field 'target': set exactly one of 'target_bucket'"),
        (
            {**{k: v for k, v in ENTRY.items() if k != "target_bucket"}, "target": "http://b/p"},
            "field 'target': 'http://b/p' must start with 's3://'",
        ),
        ({**ENTRY, "batch_size": 0}, "field 'batch_size': Input should be greater than or equal to 1"),
        ({**ENTRY, "part_size_mb": 1}, "field 'part_size_mb': Input should be greater than or equal to 5"),
    ],
)
def test_invalid_entry_names_entry_and_field(entry, expected):
    with pytest.raises(ConfigError) as failure:
        parse_tables([entry])
    assert expected in str(failure.value)
    assert str(failure.value).startswith("TABLES: entry 0")


@pytest.mark.parametrize("condition", ["name = 'a)b'", "\"name\" IN ('x', 'it''s')", "(a > 1 OR b < 2) AND c"])
def test_valid_filters(condition):
    (cfg,) = parse_tables([{**ENTRY, "filter": condition}])
    assert cfg.filter == condition


@pytest.mark.parametrize(("fmt", "compression"), [("jsonl", "gzip"), ("csv", "gzip"), ("parquet", "zstd")])
def test_default_compression_per_format(fmt, compression):
    (cfg,) = parse_tables([{**ENTRY, "engine": "stream", "format": fmt}])
    assert cfg.compression == compression


def test_second_entry_is_named_by_index():
    with pytest.raises(ConfigError, match=r"TABLES: entry 1 \(table 'doc.b'\): field 'timestamp_column'"):
        parse_tables([ENTRY, {"table": "doc.b", "target_bucket": "bkt/b"}])


def test_duplicate_table_is_rejected():
    with pytest.raises(ConfigError, match=r"entry 1 \(table 'metrics'\): field 'table': duplicate of entry 0"):
        parse_tables([ENTRY, {**ENTRY, "table": "metrics", "target_bucket": "crate-astro-tutorial/other"}])


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ({"target_bucket": "bkt/metrics"}, {"target_bucket": "bkt/metrics"}),
        ({"target": "s3://bkt/lake"}, {"target": "s3://bkt/lake/doc.a"}),
        # the tutorial layout's folders are <path>-YYYY-MM-DD: every day's folder counts, not one sample
        ({"target_bucket": "lake/data"}, {"target": "s3://lake/data-2024-01-04"}),
        ({"target_bucket": "lake/data"}, {"target": "s3://lake/data-1999-12-31/sub"}),
        ({"target_bucket": "lake/data"}, {"target_bucket": "lake/data-2024-01-04/x"}),
        ({"target": "s3://lake/data-2024-01-04"}, {"target_bucket": "lake/data"}),
        ({"target": "s3://lake"}, {"target_bucket": "lake/doc.a/dt"}),
        ({"target_bucket": "lake/a/other.x/dt"}, {"target": "s3://lake/a"}),  # days inside a table folder
    ],
)
def test_two_tables_never_share_a_folder(first, second):
    entries = [
        {"table": "doc.a", "timestamp_column": "ts", **first},
        {"table": "other.x", "timestamp_column": "ts", **second},
    ]
    with pytest.raises(ConfigError, match=r"entry 1 \(table 'other.x'\): field 'target.*': its folders .* overlap"):
        parse_tables(entries)


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ({"target_bucket": "lake/data"}, {"target_bucket": "lake/data-x"}),
        ({"target_bucket": "lake/data"}, {"target": "s3://lake/data-2024-01-04x"}),
        ({"target_bucket": "lake/data"}, {"target": "s3://lake/data"}),  # lake/data/other.x: not data-<day>
        ({"target_bucket": "lake/data"}, {"target_bucket": "other-lake/data"}),
        ({"target": "s3://lake/a"}, {"target": "s3://lake/ab"}),
    ],
)
def test_folders_as_close_as_allowed(first, second):
    entries = [
        {"table": "doc.a", "timestamp_column": "ts", **first},
        {"table": "other.x", "timestamp_column": "ts", **second},
    ]
    assert len(parse_tables(entries)) == 2


def test_folder_patterns():
    from cratedb_airflow_export.layout import Folders

    daily = Folders("b", "p/data", per_day=True)
    assert str(daily) == "s3://b/p/data-YYYY-MM-DD/"
    assert daily.holds("p/data-2024-01-04") and daily.holds("p/data-2024-01-04/part-00000.jsonl.gz")
    assert not daily.holds("p/data-2024-01-04x") and not daily.holds("p/data") and not daily.holds("p/data-x")
    fixed = Folders("b", "p/doc.t", per_day=False)
    assert fixed.holds("p/doc.t") and fixed.holds("p/doc.t/dt=2024-01-04") and not fixed.holds("p/doc.tt")


def test_same_hive_target_for_many_tables_is_fine():
    entries = [
        {"table": "doc.metrics", "timestamp_column": "ts", "target": "s3://lake/x"},
        {"table": "other.metrics", "timestamp_column": "ts", "target": "s3://lake/x"},
    ]
    assert [t.qualified_name for t in parse_tables(entries)] == ["doc.metrics", "other.metrics"]


@pytest.mark.parametrize("value", [None, [], {"table": "x"}, "doc.metrics"])
def test_tables_must_be_a_non_empty_list(value):
    with pytest.raises(ConfigError, match="expected a non-empty list of table entries"):
        parse_tables(value)


def test_entry_must_be_a_mapping():
    with pytest.raises(ConfigError, match="TABLES: entry 0: expected a mapping, got str"):
        parse_tables(["doc.metrics"])


def test_yaml_file_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    config = tmp_path / "exports.yaml"
    config.write_text(
        textwrap.dedent("""\
        tables:
          - table: doc.metrics
            timestamp_column: timestamp
            target: s3://lake/exports
            engine: stream
    """)
    )
    monkeypatch.setenv("CRATEDB_EXPORT_CONFIG", str(config))
    (cfg,) = load_tables(default_file=tmp_path / "unused.py")
    assert (cfg.qualified_name, cfg.engine, cfg.target) == ("doc.metrics", "stream", "s3://lake/exports")


def test_yaml_bare_list_and_errors(tmp_path: Path):
    config = tmp_path / "exports.yml"
    config.write_text("- {table: doc.metrics, timestamp_column: ts, target: 's3://lake/x', engin: copy}\n")
    with pytest.raises(ConfigError, match=r"exports.yml: entry 0 \(table 'doc.metrics'\): field 'engin': unknown key"):
        load_yaml_tables(config)
    config.write_text("tables: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_yaml_tables(config)
    config.write_text("table: []\n")
    with pytest.raises(ConfigError, match=r"unknown top-level key\(s\) \['table'\]"):
        load_yaml_tables(config)
    with pytest.raises(ConfigError, match="file not found"):
        load_yaml_tables(tmp_path / "missing.yaml")


def test_python_file_without_tables(tmp_path: Path):
    module = tmp_path / "table_exports.py"
    module.write_text("TABLE = []\n")
    with pytest.raises(ConfigError, match="defines no TABLES list"):
        load_tables(default_file=module)


def test_dag_settings_from_environment():
    assert DagSettings.from_env({}) == DagSettings(
        catchup=False,
        start_date="2024-01-01",
        pool="cratedb_export",
        retries=2,
        retry_delay_minutes=5,
        max_active_runs=4,
    )
    settings = DagSettings.from_env({"CRATEDB_EXPORT_CATCHUP": "true", "CRATEDB_EXPORT_POOL": "p"})
    assert (settings.catchup, settings.pool) == (True, "p")
    with pytest.raises(ConfigError, match="CRATEDB_EXPORT_RETRIES: Input should be a valid integer"):
        DagSettings.from_env({"CRATEDB_EXPORT_RETRIES": "many"})
    with pytest.raises(ConfigError, match="CRATEDB_EXPORT_START_DATE"):
        DagSettings.from_env({"CRATEDB_EXPORT_START_DATE": "yesterday"})


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"target_bucket": "a..b/p"}, "field 'target_bucket': 'a..b' is not a valid S3 bucket name (no '..'"),
        ({"target": "s3://192.168.1.10/p"}, "field 'target': '192.168.1.10' is not a valid S3 bucket name (not shaped"),
        ({"target_bucket": "bucket\n/p"}, "field 'target_bucket': 'bucket\\n' is not a valid S3 bucket name"),
        ({"target": "s3://bucket-\n"}, "field 'target': 'bucket-\\n' is not a valid S3 bucket name"),
        ({"target": "s3://xn--bucket/p"}, "is not a valid S3 bucket name (not a prefix or suffix S3 reserves)"),
        ({"target": "s3://ab"}, "'ab' is not a valid S3 bucket name (3 to 63"),
        ({"target": "s3://" + "b" * 64}, "is not a valid S3 bucket name (3 to 63"),
        ({"target": "s3://lake/_cratedb_export_staging/x"}, "inside _cratedb_export_staging/, which every export"),
        ({"target_bucket": "lake/_cratedb_export_staging"}, "inside _cratedb_export_staging/, which every export"),
        ({"target": "s3://lake/a\tb"}, "field 'target': the path 'a\\tb' holds a control character"),
        ({"table": "doc.metrics\n"}, "field 'table': table name part 'metrics\\n' is not a plain identifier"),
        ({"timestamp_column": "ts\n"}, "field 'timestamp_column': timestamp_column 'ts\\n' is not a plain"),
        ({"slices": True}, "field 'slices': Input should be a valid integer"),
        ({"slices": "3"}, "field 'slices': Input should be a valid integer"),
        ({"batch_size": 10.0}, "field 'batch_size': Input should be a valid integer"),
        ({"engine": "stream", "compression_level": "6"}, "field 'compression_level': Input should be a valid integer"),
        ({"table": "doc." + "t" * 300}, "field 'table': the task id 'export_doc.ttttt"),
        ({"lateness": "2x"}, "field 'lateness': lateness '2x' is not a duration such as '2h'"),
        ({"lateness": "8d"}, "field 'lateness': lateness '8d' is more than 7 days"),
        ({"lateness": 3600}, "field 'lateness': lateness 3600 is not a duration"),
        ({"reconcile_days": "3"}, "field 'reconcile_days': Input should be a valid integer"),
        ({"reconcile_days": 93}, "field 'reconcile_days': Input should be less than or equal to 92"),
        ({"table": "doc." + "t" * 240}, "Airflow allows 250: use a shorter table name"),  # its .slices task id
        ({"target_bucket": "lake/" + "p/" * 760 + "x"}, "field 'target_bucket': the export location's Asset URI"),
    ],
)
def test_configuration_slips_are_refused_with_entry_and_field(overrides, expected):
    with pytest.raises(ConfigError) as failure:
        parse_tables([{**ENTRY, **overrides}])
    assert "TABLES: entry 0 (table " in str(failure.value)
    assert expected in str(failure.value)


def test_yaml_slices_yes_is_not_one(tmp_path: Path):
    config = tmp_path / "c.yaml"
    config.write_text("tables: [{table: doc.t, timestamp_column: ts, target: 's3://lake/x', slices: yes}]\n")
    with pytest.raises(ConfigError, match=r"entry 0 .*field 'slices': Input should be a valid integer"):
        load_yaml_tables(config)


def test_airflow_limits_are_airflows():
    from airflow.models.asset import AssetModel
    from airflow.models.base import ID_LEN

    from cratedb_airflow_export.loading import MAX_ASSET_URI, MAX_TASK_ID

    assert MAX_TASK_ID == ID_LEN
    assert MAX_ASSET_URI == AssetModel.__table__.c.uri.type.length


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda d: d / "missing.yaml", "CRATEDB_EXPORT_CONFIG={path}: file not found"),
        (lambda d: d, "CRATEDB_EXPORT_CONFIG={path}: is a directory, not a configuration file"),
        (lambda d: _write(d / "bin.yaml", b"\xff\xfe\x00tables"), "CRATEDB_EXPORT_CONFIG={path}: not UTF-8 text"),
        (lambda d: _write(d / "bad.yaml", b"tables: [oops"), "CRATEDB_EXPORT_CONFIG={path}: not valid YAML"),
    ],
)
def test_configuration_file_problems_name_the_variable_and_the_path(tmp_path, monkeypatch, make, expected):
    path = make(tmp_path)
    monkeypatch.setenv("CRATEDB_EXPORT_CONFIG", str(path))
    with pytest.raises(ConfigError) as failure:
        load_tables()
    assert str(failure.value).startswith(expected.format(path=path))


def test_unreadable_configuration_file(tmp_path, monkeypatch):
    import os

    path = _write(tmp_path / "secret.yaml", b"tables: []")
    path.chmod(0)
    if os.access(path, os.R_OK):  # root reads anything: a link to itself cannot be read either (ELOOP)
        path.unlink()
        os.symlink(path, path)
    monkeypatch.setenv("CRATEDB_EXPORT_CONFIG", str(path))
    with pytest.raises(ConfigError, match=rf"CRATEDB_EXPORT_CONFIG={path}: (not readable|cannot be read)"):
        load_tables()


def test_a_broken_python_table_file_names_the_path(tmp_path):
    from cratedb_airflow_export.loading import load_python_tables

    path = _write(tmp_path / "table_exports.py", b"TABLES = [\n")
    with pytest.raises(ConfigError, match=rf"{path}: failed to run: SyntaxError"):
        load_python_tables(path)


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_model_is_frozen():
    cfg = TableExport.model_validate(ENTRY)
    with pytest.raises(ValueError):
        cfg.table = "doc.other"  # type: ignore[misc]


def test_shipped_example_yaml_is_valid():
    from tests.helpers import REPO

    tables = load_yaml_tables(REPO / "include" / "table_exports.example.yaml")
    assert [(t.qualified_name, t.engine) for t in tables] == [("doc.metrics", "copy"), ("iot.readings", "stream")]


KEY = "arn:aws:kms:us-east-1:123456789012:key/cratedb-export-test"


def test_a_kms_key_needs_aws_kms():
    from cratedb_airflow_export.errors import ConfigError
    from cratedb_airflow_export.loading import parse_tables

    with pytest.raises(ConfigError, match=r"field 'sse_kms_key_id': a KMS key needs sse: 'aws:kms'"):
        parse_tables([{"table": "t", "timestamp_column": "ts", "target": "s3://lake/x", "sse_kms_key_id": KEY}])
    with pytest.raises(ConfigError, match="field 'sse': Input should be 'AES256' or 'aws:kms'"):
        parse_tables([{"table": "t", "timestamp_column": "ts", "target": "s3://lake/x", "sse": "aes256"}])


def test_among_many_tables_the_first_overlap_is_named():
    """The check compares only folders whose paths are prefixes of one another (near-linear in the
    tables), and still names the first entry that overlaps an earlier one, as read in order."""
    entries = [{"table": f"doc.t{i}", "timestamp_column": "ts", "target": "s3://lake/cratedb"} for i in range(600)]
    assert len(parse_tables(entries)) == 600  # doc.t1 is a prefix of doc.t10 as text, not as a folder
    entries[400] = {"table": "x.late", "timestamp_column": "ts", "target_bucket": "lake/cratedb/doc.t10/dt"}
    entries[500] = {"table": "x.b", "timestamp_column": "ts", "target": "s3://lake/cratedb/doc.t450/dt=2024-01-04"}
    with pytest.raises(ConfigError) as failure:
        parse_tables(entries)
    assert str(failure.value) == (
        "TABLES: entry 400 (table 'x.late'): field 'target_bucket': its folders "
        "(s3://lake/cratedb/doc.t10/dt-YYYY-MM-DD/) overlap those of entry 10 (s3://lake/cratedb/doc.t10/); two "
        "tables must never share a folder (publishing a partition replaces everything in it, and CrateDB's file "
        "names omit the schema)"
    )


RETAINED = {"table": "doc.metrics", "timestamp_column": "ts", "target": "s3://lake/x"}


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({"retain_days": 0}, "greater than or equal to 1"),
        ({"retain_days": "30"}, "valid integer"),
        ({"retain_days": 30, "columns": ["ts", "name"]}, "only some columns"),
        ({"retain_days": 30, "filter": "name = 'cpu'"}, "only the filter's rows"),
        ({"retain_days": 3, "reconcile_days": 3}, "must be more than reconcile_days (3)"),
        ({"retain_days": 2, "lateness": "2d"}, "must be more than the lateness"),
    ],
)
def test_retention_is_refused_where_the_archive_would_not_hold_what_is_deleted(extra, expected):
    with pytest.raises(ValueError, match=re.escape(expected)):
        TableExport.model_validate({**RETAINED, **extra})


def test_retention_is_off_by_default_and_kept_when_set():
    assert TableExport.model_validate(RETAINED).retain_days is None
    cfg = TableExport.model_validate({**RETAINED, "retain_days": 30, "reconcile_days": 7, "lateness": "1d"})
    assert cfg.retain_days == 30


ICEBERG_ENTRY = {
    "table": "doc.m",
    "timestamp_column": "ts",
    "engine": "stream",
    "format": "iceberg",
    "target": "s3://bkt/p",
}


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"target": None, "target_bucket": "bkt/p"}, "format: 'iceberg' needs 'target'"),
        ({"slices": 2}, "slices: not available with format 'iceberg' yet"),
        ({"reconcile_days": 1}, "reconcile_days: not available with format 'iceberg' yet"),
        ({"retain_days": 30}, "retain_days: not available with format 'iceberg' yet"),
        ({"columns": ["a"]}, "columns: not available with format 'iceberg' yet"),
        ({"engine": "copy"}, "needs engine 'stream'"),
        ({"iceberg_table": "metrics"}, "iceberg_table 'metrics' must be 'namespace.table'"),
        ({"iceberg_table": "a.b;drop"}, "is not a plain identifier"),
    ],
)
def test_iceberg_entries_that_cannot_work_are_refused(extra, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        TableExport.model_validate({k: v for k, v in {**ICEBERG_ENTRY, **extra}.items() if v is not None})


def test_objects_as_structs_are_for_parquet_and_iceberg():
    entry = {
        "table": "doc.m",
        "timestamp_column": "ts",
        "engine": "stream",
        "target": "s3://bkt/p",
        "objects": "struct",
    }
    assert TableExport.model_validate({**entry, "format": "iceberg"}).objects == "struct"
    with pytest.raises(ValueError, match="objects: 'struct' is for Parquet; jsonl writes objects as JSON"):
        TableExport.model_validate({**entry, "format": "jsonl"})


def test_an_iceberg_table_without_the_iceberg_extra_is_refused_naming_the_table_and_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "pyiceberg", None)  # how Python marks a package unimportable
    with pytest.raises(ConfigError) as refused:
        parse_tables([ICEBERG_ENTRY])
    assert "doc.m" in str(refused.value)
    assert "pip install 'cratedb-airflow-export[iceberg]'" in str(refused.value)
    monkeypatch.delitem(sys.modules, "pyiceberg")
    assert parse_tables([ICEBERG_ENTRY])[0].format == "iceberg"  # with it installed, accepted


def test_an_azure_target_streams_and_says_what_it_does_not_support():
    base = {"table": "doc.metrics", "timestamp_column": "ts", "target": "az://lake/cratedb", "engine": "stream"}
    cfg = TableExport.model_validate(base)
    assert (cfg.store, cfg.wasb_conn_id) == ("az", "wasb_default")
    assert TableExport.model_validate({**base, "target": "abfs://lake/cratedb"}).store == "az"
    assert TableExport.model_validate({**base, "engine": "copy"}).engine == "copy"  # CrateDB's COPY TO az://
    assert TableExport.model_validate({**base, "format": "iceberg"}).format == "iceberg"  # through the store
    with pytest.raises(ValueError, match="encrypts every object at rest itself"):
        TableExport.model_validate({**base, "sse": "AES256"})
