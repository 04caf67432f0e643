"""``cratedb-export``: the command line.

    cratedb-export plan --date 2024-01-04 [--json] [--config FILE] [--table T]

``plan`` prints, for each configured table, the interval [D, D+1) UTC, the engine, every SQL
statement exactly as it would be sent (bind parameters listed, secrets redacted) and the target
URI. It touches neither CrateDB nor S3.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import Any

from cratedb_airflow_export.config import CONFIG_ENV, ConfigError, TableExport, load_python_tables, load_yaml_tables

DEFAULT_TABLES_FILE = Path("include") / "table_exports.py"


def _load(config: str | None) -> list[TableExport]:
    path = Path(config or os.environ.get(CONFIG_ENV) or DEFAULT_TABLES_FILE)
    if path.suffix == ".py":
        if not path.exists():
            raise ConfigError(f"{path}: not found (run from the project folder, or pass --config)")
        return load_python_tables(path)
    return load_yaml_tables(path)


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date in the form YYYY-MM-DD") from None


def build_plan(tables: list[TableExport], day: date) -> dict[str, Any]:
    from cratedb_airflow_export.credentials import plan_credentials
    from cratedb_airflow_export.export import plan_export
    from cratedb_airflow_export.windows import Window

    window = Window.for_day(day)
    return {
        "interval": window.as_dict(),
        "tables": [plan_export(t, window, plan_credentials(t.aws_conn_id)) for t in tables],
    }


def _print_text(plan: dict[str, Any]) -> None:
    interval = plan["interval"]
    print(f"Interval: [{interval['start']}, {interval['end']}) UTC")
    for table in plan["tables"]:
        print(f"\n{table['table']}  engine={table['engine']}")
        print(f"  target: {table['target']}")
        for number, (statement, params) in enumerate(zip(table["statements"], table["parameters"], strict=True), 1):
            print(f"  {number}. {statement}")
            for index, value in enumerate(params, 1):
                print(f"       ${index} = {value}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cratedb-export", description="CrateDB -> S3 export tools")
    commands = parser.add_subparsers(dest="command", required=True)
    plan = commands.add_parser("plan", help="show what the export of one day would do (dry run)")
    plan.add_argument("--date", required=True, type=_day, help="the day D to export: rows in [D, D+1) UTC")
    plan.add_argument("--json", action="store_true", help="print one JSON document")
    plan.add_argument(
        "--config", help=f"table config (.py with TABLES, or YAML); default ${CONFIG_ENV} or {DEFAULT_TABLES_FILE}"
    )
    plan.add_argument("--table", action="append", help="only this table (repeatable)")
    args = parser.parse_args(argv)

    try:
        tables = _load(args.config)
    except ConfigError as exc:
        print(f"configuration error:\n{exc}", file=sys.stderr)
        return 2
    if args.table:
        wanted = {t if "." in t else f"doc.{t}" for t in args.table}
        unknown = wanted - {t.qualified_name for t in tables}
        if unknown:
            print(f"not configured: {', '.join(sorted(unknown))}", file=sys.stderr)
            return 2
        tables = [t for t in tables if t.qualified_name in wanted]
    result = build_plan(tables, args.date)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        _print_text(result)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
