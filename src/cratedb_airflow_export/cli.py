"""``cratedb-export``: the command line.

    cratedb-export plan --date 2024-01-04 [--json] [--config FILE] [--table T]
    cratedb-export verify --date 2024-01-04 [--to 2024-01-06] [--table T] [--config FILE] [--no-source] [--json]
    cratedb-export run --date 2024-01-04 [--to 2024-01-06] [--table T] [--config FILE] [--json]
    cratedb-export restore --table T --date 2024-01-04 [--to D2] [--into schema.table] [--replace]
                           [--method auto|copy|worker] [--config FILE] [--json]
    cratedb-export reconcile --days 7 [--until 2024-01-04] [--table T] [--config FILE] [--json]
    cratedb-export purge --table T --before 2024-01-01 [--dry-run] [--json] [--config FILE]
    (every subcommand: -q/--quiet, -v/--verbose; cratedb-export --version)

``plan`` prints, for each configured table, the interval [D, D+1) UTC, the engine, every SQL
statement exactly as it would be sent (bind parameters listed, secrets redacted) and the target
URI, and for a table with ``retain_days`` which days the retention run of D deletes and how. It
touches neither CrateDB nor S3.

``run`` exports days now, without Airflow (cron, a Kubernetes job, a laptop): the same core as the
DAG's tasks, each day its own partition with the usual publish protocol; progress goes to stderr,
one result line per partition to stdout, exit code 1 when any export failed.

``reconcile`` recounts the last N exported days (up to ``--until``, default yesterday, UTC) and exports
again each whose source count changed since (late rows): see ``reconcile.py``.

``purge`` deletes a table's source rows of the days before ``--before`` that are safely archived, with
the retention DAG's checks (``--dry-run``: the checks alone, nothing written): see ``retention.py``.

``restore`` loads complete partitions back into the table (or ``--into`` another): see ``restore.py``.

``verify`` checks published partitions against their manifests (``_SUCCESS``, every listed object
with its size, ETag and checksum, no unlisted data object) and against ``count(*)`` over the same
window in the source: for one table and day the whole report; for every configured table (no
``--table``) or a range of days (``--to``), one line per partition, ``complete``, ``missing`` or
``failed`` and why, what an operator runs after an incident. It exits 1 when any partition is not
complete, 2 when one could not be checked.

Connections come from the same Airflow connections as the DAG: the ``AIRFLOW_CONN_*`` variables,
read without importing Airflow; a connection id that is not in the environment is looked up
through Airflow (metadata database, secrets backend) when Airflow is installed.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import logging
import os
import sys
import textwrap
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from cratedb_airflow_export.config import TableExport, qualify
from cratedb_airflow_export.connections import ENV_ENDPOINT, ConnectionSpec, environment_lookup
from cratedb_airflow_export.credentials import S3Credentials
from cratedb_airflow_export.errors import ConfigError, WindowError
from cratedb_airflow_export.loading import CONFIG_ENV, load_python_tables, load_yaml_tables

if TYPE_CHECKING:
    from _typeshed import SupportsWrite

DEFAULT_TABLES_FILE = Path("include") / "table_exports.py"


def _load(config: str | None) -> list[TableExport]:
    env = os.environ.get(CONFIG_ENV)
    path = Path(config or env or DEFAULT_TABLES_FILE)
    origin = "--config " if config else f"{CONFIG_ENV}=" if env else ""
    if path.suffix == ".py":
        if not path.exists():
            raise ConfigError(f"{origin}{path}: not found (run from the project folder, or pass --config)")
        return load_python_tables(path, origin)
    return load_yaml_tables(path, origin)


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date in the form YYYY-MM-DD") from None


def find_connection(conn_id: str) -> ConnectionSpec | None:
    """A connection from ``AIRFLOW_CONN_<ID>``; else, when Airflow is installed, from Airflow."""
    spec = environment_lookup()(conn_id)
    if spec is None and importlib.util.find_spec("airflow") is not None:
        from cratedb_airflow_export.edge.resolve import airflow_connection

        spec = airflow_connection(conn_id)
    return spec


def plan_credentials(aws_conn_id: str) -> S3Credentials:
    """Endpoint and region of ``aws_conn_id``, without any key and without network access."""
    from cratedb_airflow_export.connections import s3_credentials

    try:
        spec = find_connection(aws_conn_id)
        if spec is not None:
            return s3_credentials(spec).without_keys()
    except Exception:  # an unreadable connection: fall back to the environment, as without one
        pass
    return S3Credentials(
        endpoint_url=os.environ.get(ENV_ENDPOINT) or None, region=os.environ.get("AWS_REGION") or None, origin="plan"
    )


PLAN_ASSUMES = "the statements a CrateDB source is sent; plan connects to nothing, so it cannot tell the source"


def build_plan(tables: list[TableExport], day: date) -> dict[str, Any]:
    from cratedb_airflow_export.export import plan_export
    from cratedb_airflow_export.retention import plan_retention
    from cratedb_airflow_export.windows import Window

    window = Window.for_day(day)
    planned = []
    for table in tables:
        plan = plan_export(table, window, plan_credentials(table.aws_conn_id))
        retention = plan_retention(table, day)
        planned.append(plan if retention is None else {**plan, "retention": retention})
    return {"interval": window.as_dict(), "assumes": PLAN_ASSUMES, "tables": planned}


def _print_text(plan: dict[str, Any], out: TextIO) -> None:
    interval = plan["interval"]
    lines = [f"Interval: [{interval['start']}, {interval['end']}) UTC", f"({plan['assumes']})"]
    for table in plan["tables"]:
        lines += ["", f"{table['table']}  engine={table['engine']}", f"  target: {table['target']}"]
        if table["engine_needs"]:
            lines.append(f"  engine {table['engine']}: {table['engine_needs']}")
        for number, (statement, params) in enumerate(zip(table["statements"], table["parameters"], strict=True), 1):
            lines.append(f"  {number}. {statement}")
            lines += [f"       ${index} = {value}" for index, value in enumerate(params, 1)]
        retention = table.get("retention")
        if retention:
            lines.append(
                f"  retention: keep {retention['retain_days']} days, delete the days before {retention['before']}"
            )
            for statement, params in zip(retention["statements"], retention["parameters"], strict=True):
                lines.append(f"    {statement}")
                lines += [f"       ${index} = {value}" for index, value in enumerate(params, 1)]
            lines.append(f"    ({retention['note']})")
    print("\n".join(lines), file=out)


def _verify(
    tables: list[TableExport],
    names: list[str] | None,
    first: date,
    last: date | None,
    out: TextIO,
    *,
    with_source: bool,
    as_json: bool = False,
) -> int:
    """One table and one day: the whole report. Otherwise (no ``--table``, several, or ``--to``) one
    line per partition: complete, missing or failed and why; exit 1 when any is not complete."""
    from contextlib import closing

    from cratedb_airflow_export.connections import from_environment
    from cratedb_airflow_export.credentials import Redactor
    from cratedb_airflow_export.source import connect
    from cratedb_airflow_export.verify import verify_iceberg_day, verify_partition
    from cratedb_airflow_export.windows import Window, days_between

    try:
        selected = _select(tables, names)
        days = days_between(first, last)
    except (ConfigError, WindowError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    detailed = names is not None and len(selected) == 1 and len(days) == 1
    failures, errors = 0, 0
    for cfg in selected:
        redact = Redactor()
        try:
            connections = from_environment(cfg, find_connection)  # once per table
            redact.add(connections.secrets)
            with contextlib.ExitStack() as stack:
                cursor = None
                if with_source:
                    conn = stack.enter_context(closing(connect(connections.database)))
                    cursor = stack.enter_context(conn.cursor())
                for day in days:
                    window = Window.for_day(day)
                    if connections.catalog is not None:  # format iceberg: the table's commits
                        report = verify_iceberg_day(connections.store, connections.catalog, cursor, cfg, window)
                    else:
                        report = verify_partition(connections.store, cursor, cfg, window)
                    name, shown = cfg.qualified_name, day.isoformat()
                    if as_json:
                        print(json.dumps(report.as_dict(name, shown)), file=out)
                    else:
                        print(report.render() if detailed else report.line(name, shown), file=out)
                    failures += not report.ok
        except Exception as exc:
            errors += 1
            message = redact(f"{type(exc).__name__}: {exc}")
            print(f"error: could not verify {cfg.qualified_name} for {first}: {message}", file=sys.stderr)
            if as_json:
                print(json.dumps({"table": cfg.qualified_name, "state": "unchecked", "error": message}), file=out)
    if errors:
        return 2
    return 1 if failures else 0


@contextmanager
def _logs_to_stderr() -> Iterator[TextIO]:
    """Keep stdout for results: Airflow's logging writes to stdout, which would corrupt ``--json``."""
    out = sys.stdout
    moved = [h for h in logging.getLogger().handlers if isinstance(h, logging.StreamHandler) and h.stream is out]
    for handler in moved:
        handler.setStream(sys.stderr)
    sys.stdout = sys.stderr  # handlers Airflow creates from now on log to stderr
    try:
        yield out
    finally:
        sys.stdout = out
        for handler in moved:
            handler.setStream(out)


def main(argv: Sequence[str] | None = None) -> int:
    with _logs_to_stderr() as out:
        return _main(argv, out)


def _select(tables: list[TableExport], names: Sequence[str] | None) -> list[TableExport]:
    """The configured tables named (all without names); raises ConfigError for unknown names."""
    if not names:
        return tables
    wanted = {qualify(t) for t in names}
    unknown = wanted - {t.qualified_name for t in tables}
    if unknown:
        raise ConfigError(f"not configured: {', '.join(sorted(unknown))}")
    return [t for t in tables if t.qualified_name in wanted]


def _run(tables: list[TableExport], first: date, last: date | None, out: TextIO, *, as_json: bool) -> int:
    """Export each table's days without Airflow: the same core as the DAG's tasks, connections from
    the environment. One line (or JSON object) per partition; exit 1 when any export failed."""
    from datetime import datetime, timezone

    from cratedb_airflow_export.connections import from_environment
    from cratedb_airflow_export.errors import ExportError, failures_named
    from cratedb_airflow_export.export import RunInfo, run_export
    from cratedb_airflow_export.windows import Window, days_between

    days = days_between(first, last)
    run = RunInfo(run_id=f"cli__{datetime.now(timezone.utc).isoformat(timespec='seconds')}")
    failed = 0
    for cfg in tables:
        try:
            with failures_named(f"export of {cfg.qualified_name}"):
                connections = from_environment(cfg, find_connection)  # once per table
        except ExportError as exc:
            print(f"FAILED {cfg.qualified_name}: {exc}", file=out)
            failed += len(days)
            continue
        for number, day in enumerate(days, 1):
            try:
                result = run_export(cfg, Window.for_day(day), run, connections, position=(number, len(days)))
            except ExportError as exc:
                failed += 1
                print(
                    json.dumps({"table": cfg.qualified_name, "day": str(day), "error": str(exc)})
                    if as_json
                    else f"FAILED {cfg.qualified_name} {day}: {exc}",
                    file=out,
                )
                continue
            summary = result.as_dict()
            print(
                json.dumps(summary)
                if as_json
                else f"OK {cfg.qualified_name} {day}: {summary['rows']} rows in {len(summary['objects'])} object(s), "
                f"{summary['bytes']:,} bytes -> {summary['target']}",
                file=out,
            )
    return 1 if failed else 0


def _restore(cfg: TableExport, first: date, last: date | None, args: argparse.Namespace, out: TextIO) -> int:
    """Restore each day; one line (``--json``: object) per day; exit 1 when any was refused or failed."""
    from cratedb_airflow_export.connections import from_environment
    from cratedb_airflow_export.errors import ExportError, failures_named
    from cratedb_airflow_export.restore import restore
    from cratedb_airflow_export.windows import Window, days_between

    failed = 0
    try:
        with failures_named(f"restore of {cfg.qualified_name}"):
            connections = from_environment(cfg, find_connection)
    except ExportError as exc:
        print(json.dumps({"table": cfg.qualified_name, "error": str(exc)}) if args.json else f"FAILED {exc}", file=out)
        return 1
    for day in days_between(first, last):
        try:
            (result,) = restore(
                cfg,
                [Window.for_day(day)],
                into=args.into,
                replace=args.replace,
                method=args.method,
                connections=connections,
            )
        except ExportError as exc:
            failed += 1
            error = {"table": cfg.qualified_name, "day": str(day), "error": str(exc)}
            print(json.dumps(error) if args.json else f"FAILED {cfg.qualified_name} {day}: {exc}", file=out)
            continue
        print(
            json.dumps(result.as_dict())
            if args.json
            else f"OK {result.partition} -> {result.table}: {result.rows} rows ({result.method}"
            f"{f', {result.deleted} rows replaced' if result.deleted else ''})",
            file=out,
        )
    return 1 if failed else 0


def _reconcile(tables: list[TableExport], days: int, until: date | None, out: TextIO, *, as_json: bool) -> int:
    from datetime import datetime, timedelta, timezone

    from cratedb_airflow_export.connections import from_environment
    from cratedb_airflow_export.errors import ExportError, failures_named
    from cratedb_airflow_export.export import RunInfo
    from cratedb_airflow_export.reconcile import reconcile

    last = until or datetime.now(timezone.utc).date() - timedelta(days=1)
    wanted = [last - timedelta(days=back) for back in range(days - 1, -1, -1)]
    run = RunInfo(run_id=f"cli__reconcile__{datetime.now(timezone.utc).isoformat(timespec='seconds')}")
    failed = 0
    for cfg in tables:
        try:
            with failures_named(f"reconcile of {cfg.qualified_name}"):
                connections = from_environment(cfg, find_connection)
            recounts = reconcile(cfg, wanted, run, connections)
        except ExportError as exc:
            failed += 1
            error = {"table": cfg.qualified_name, "error": str(exc)}
            print(json.dumps(error) if as_json else f"FAILED {exc}", file=out)
            continue
        for recount in recounts:
            shown = {"table": cfg.qualified_name, **recount.as_dict()}
            print(json.dumps(shown) if as_json else recount.describe(cfg.qualified_name), file=out)
    return 1 if failed else 0


def _purge(cfg: TableExport, before: date, out: TextIO, *, dry_run: bool, as_json: bool) -> int:
    """Purge (or, ``dry_run``, check) ``cfg``'s archived days before ``before``: one line per
    partition or day; exit 1 when any was refused or a DELETE removed rows that were not archived."""
    from datetime import datetime, timezone

    from cratedb_airflow_export.connections import from_environment
    from cratedb_airflow_export.errors import ExportError, failures_named
    from cratedb_airflow_export.export import RunInfo
    from cratedb_airflow_export.retention import purge, refusals

    run = RunInfo(run_id=f"cli__purge__{datetime.now(timezone.utc).isoformat(timespec='seconds')}")
    try:
        with failures_named(f"purge of {cfg.qualified_name} before {before}"):
            outcomes = purge(cfg, before, dry_run=dry_run, run=run, connections=from_environment(cfg, find_connection))
    except ExportError as exc:
        print(f"FAILED {exc}", file=out)
        return 1
    if not outcomes:
        print(f"{cfg.qualified_name}: nothing to purge before {before}", file=out)
    for outcome in outcomes:
        print(json.dumps(outcome.as_dict()) if as_json else outcome.describe(cfg.qualified_name), file=out)
    return 1 if refusals(cfg, outcomes) is not None else 0  # refused, or rows deleted that were not archived


def _installed_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("cratedb-airflow-export")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "(not installed)"


HELP_WIDTH = 100
EXIT_CODES = "exit codes: 0 done; 1 {failed}; 2 {unusable}"
UNUSABLE = "bad arguments or configuration"
UNCHECKED = {"verify": f"{UNUSABLE}, or a partition could not be checked (connections, S3)"}
# for each subcommand: what it does and touches, what exit code 1 means, one example
COMMANDS: dict[str, tuple[str, str, str]] = {
    "plan": (
        "Print, for each configured table, the day's window, the target and every statement exactly as "
        "it would be sent (secrets redacted). Connects to nothing, writes nothing.",
        "never",
        "cratedb-export plan --date 2024-01-04 --table doc.metrics",
    ),
    "verify": (
        "Check published partitions: the manifest, every object (there, with the size and ETag it "
        "records, none extra), and the source's count(*) now (--no-source: not). Reads the bucket and "
        "the source; writes nothing.",
        "a partition is missing or not complete",
        "cratedb-export verify --table doc.metrics --date 2024-01-01 --to 2024-01-31",
    ),
    "run": (
        "Export days now, without Airflow: the same core as the DAG's tasks, connections from the "
        "environment. Reads the source, writes each day's partition (a rerun replaces it).",
        "an export failed (the others still ran)",
        "cratedb-export run --date 2024-01-04 --table doc.metrics",
    ),
    "restore": (
        "Load complete partitions back into the table (or --into another). Reads the bucket, inserts "
        "into the table (--replace deletes the day's rows first); records the restore in the partition.",
        "a day was refused or failed",
        "cratedb-export restore --table doc.metrics --date 2024-01-04 --replace",
    ),
    "reconcile": (
        "Recount exported days against the source and export again those whose rows changed since "
        "(late rows, updates). Reads the source and the bucket, replaces the changed days' partitions.",
        "a recount or an export failed",
        "cratedb-export reconcile --days 7",
    ),
    "purge": (
        "Delete the table's rows of the days before --before, only where a complete, intact archive "
        "holds exactly them (docs/retention.md). Reads the bucket and the source, deletes from the "
        "source, records the purge in the partition; --dry-run checks and deletes nothing.",
        "a day or partition was refused, or a DELETE removed rows that were not archived",
        "cratedb-export purge --table doc.metrics --before 2024-02-01 --dry-run",
    ),
}


def _verbosity() -> argparse.ArgumentParser:
    """``--quiet`` / ``--verbose``, which every subcommand takes."""
    common = argparse.ArgumentParser(add_help=False)
    chosen = common.add_mutually_exclusive_group()
    chosen.add_argument(
        "-q", "--quiet", dest="verbosity", action="store_const", const=-1, default=0, help="log warnings, errors only"
    )
    chosen.add_argument(
        "-v", "--verbose", dest="verbosity", action="store_const", const=1, help="log this package's debug messages too"
    )
    return common


def _configure_logging(verbosity: int) -> None:
    """Progress and logs to stderr (results keep stdout): INFO, or WARNING (``--quiet``), or this
    package's DEBUG messages too (``--verbose``)."""
    handler = logging.StreamHandler(sys.stderr)
    stamp = logging.Formatter("%(asctime)s %(levelname)s %(message)s", datefmt="%Y-%m-%dT%H:%M:%SZ")
    stamp.converter = time.gmtime  # UTC, as every time this tool shows: never the machine's zone
    handler.setFormatter(stamp)
    logging.basicConfig(level=logging.WARNING if verbosity < 0 else logging.INFO, handlers=[handler])
    if verbosity > 0:
        logging.getLogger("cratedb_airflow_export").setLevel(logging.DEBUG)
    elif verbosity < 0:  # also where Airflow configured logging first
        logging.getLogger().setLevel(logging.WARNING)
        logging.getLogger("cratedb_airflow_export").setLevel(logging.WARNING)


def _add_command(commands: Any, name: str, summary: str) -> argparse.ArgumentParser:
    description, failed, example = COMMANDS[name]
    codes = EXIT_CODES.format(failed=failed, unusable=UNCHECKED.get(name, UNUSABLE))
    parser: argparse.ArgumentParser = commands.add_parser(
        name,
        parents=[_verbosity()],
        help=summary,
        description=textwrap.fill(description, HELP_WIDTH),
        epilog=f"{textwrap.fill(codes, HELP_WIDTH)}\n\nexample:\n  {example}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    return parser


def build_parser(out: TextIO) -> argparse.ArgumentParser:
    """The command line's parser; help and ``--version`` print to ``out``."""

    class Parser(argparse.ArgumentParser):  # help to ``out`` as well (subcommands' parsers are Parsers too)
        def print_help(self, file: SupportsWrite[str] | None = None) -> None:
            super().print_help(file or out)

    parser = Parser(prog="cratedb-export", description="CrateDB -> S3 export tools")

    class PrintVersion(argparse.Action):  # to ``out``: stdout, which the logs are kept off
        def __call__(self, parser: argparse.ArgumentParser, *args: Any) -> None:
            print(f"{parser.prog} {_installed_version()}", file=out)
            parser.exit()

    parser.add_argument("--version", action=PrintVersion, nargs=0, help="print the installed version and exit")
    commands = parser.add_subparsers(dest="command", required=True)
    plan = _add_command(commands, "plan", "show what the export of one day would do (dry run)")
    plan.add_argument("--date", required=True, type=_day, help="the day D to export: rows in [D, D+1) UTC")
    plan.add_argument("--json", action="store_true", help="print one JSON document")
    plan.add_argument(
        "--config", help=f"table config (.py with TABLES, or YAML); default ${CONFIG_ENV} or {DEFAULT_TABLES_FILE}"
    )
    plan.add_argument("--table", action="append", help="only this table (repeatable)")
    verify = _add_command(commands, "verify", "check published partitions against their manifests and the source")
    verify.add_argument("--table", action="append", help="only this table (repeatable); default: every configured one")
    verify.add_argument("--date", required=True, type=_day, help="the (first) day D of the partitions")
    verify.add_argument("--to", type=_day, help="the last day of a range, inclusive (at most 366 days)")
    verify.add_argument("--config", help="table config, as for plan")
    verify.add_argument("--no-source", action="store_true", help="skip the count(*) against the source")
    verify.add_argument("--json", action="store_true", help="one JSON object per partition")
    run = _add_command(commands, "run", "export days now, without Airflow (same core as the DAG's tasks)")
    run.add_argument("--date", required=True, type=_day, help="the (first) day D to export: rows in [D, D+1) UTC")
    run.add_argument("--to", type=_day, help="the last day of a range, inclusive (at most 366 days)")
    run.add_argument("--table", action="append", help="only this table (repeatable); default: every configured one")
    run.add_argument("--config", help="table config, as for plan")
    run.add_argument("--json", action="store_true", help="one JSON object per partition")
    restore = _add_command(commands, "restore", "load complete partitions back into a table")
    restore.add_argument("--table", required=True, help="a configured table, 'schema.table' or 'table'")
    restore.add_argument("--date", required=True, type=_day, help="the (first) day D of the partitions")
    restore.add_argument("--to", type=_day, help="the last day of a range, inclusive (at most 366 days)")
    restore.add_argument("--into", help="load into this table instead ('schema.table' or 'table'; same columns)")
    restore.add_argument("--replace", action="store_true", help="delete the target's rows of each day first")
    restore.add_argument(
        "--method",
        choices=["auto", "copy", "worker"],
        default="auto",
        help="copy: CrateDB reads the files (COPY FROM, copy-engine partitions); worker: read and insert "
        "here (any partition); auto: copy where it applies",
    )
    restore.add_argument("--config", help="table config, as for plan")
    restore.add_argument("--json", action="store_true", help="one JSON object per day")
    again = _add_command(commands, "reconcile", "recount exported days; export again those with late rows")
    again.add_argument("--days", required=True, type=int, help="how many days to recount (1 to 366)")
    again.add_argument("--until", type=_day, help="the last day to recount (default: yesterday, UTC)")
    again.add_argument("--table", action="append", help="only this table (repeatable)")
    again.add_argument("--config", help="table config, as for plan")
    again.add_argument("--json", action="store_true", help="one JSON object per table and day")
    purge = _add_command(commands, "purge", "delete a table's source rows before a day, only where archived")
    purge.add_argument("--table", required=True, help="a configured table, 'schema.table' or 'table'")
    purge.add_argument("--before", required=True, type=_day, help="delete the days before this one (UTC)")
    purge.add_argument("--dry-run", action="store_true", help="check and show what would be deleted; delete nothing")
    purge.add_argument("--json", action="store_true", help="one JSON object per partition or day")
    purge.add_argument("--config", help="table config, as for plan")
    return parser


def _main(argv: Sequence[str] | None, out: TextIO) -> int:
    args = build_parser(out).parse_args(argv)
    _configure_logging(args.verbosity)

    try:
        tables = _load(args.config)
        if args.command in ("plan", "run", "reconcile"):
            tables = _select(tables, args.table)
    except ConfigError as exc:
        print(f"configuration error:\n{exc}", file=sys.stderr)
        return 2
    if args.command == "verify":
        return _verify(tables, args.table, args.date, args.to, out, with_source=not args.no_source, as_json=args.json)
    if args.command == "reconcile":
        if not 1 <= args.days <= 366:
            print("error: --days is from 1 to 366", file=sys.stderr)
            return 2
        return _reconcile(tables, args.days, args.until, out, as_json=args.json)
    if args.command in ("run", "restore", "purge"):
        try:
            if args.command == "purge":
                (cfg,) = _select(tables, [args.table])
                return _purge(cfg, args.before, out, dry_run=args.dry_run, as_json=args.json)
            if args.command == "restore":
                (cfg,) = _select(tables, [args.table])
                return _restore(cfg, args.date, args.to, args, out)
            return _run(tables, args.date, args.to, out, as_json=args.json)
        except (WindowError, ConfigError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    result = build_plan(tables, args.date)
    if args.json:
        print(json.dumps(result, indent=2), file=out)
    else:
        _print_text(result, out)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
