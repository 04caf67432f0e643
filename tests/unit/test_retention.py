"""retention.py without servers: the cutoff, the plan, what an outcome says."""

from __future__ import annotations

from datetime import date

from cratedb_airflow_export.config import TableExport
from cratedb_airflow_export.retention import Outcome, cutoff, plan_retention, refusals

CFG = TableExport.model_validate(
    {"table": "doc.metrics", "timestamp_column": "ts", "target": "s3://lake/x", "retain_days": 30}
)


def test_the_cutoff_keeps_exactly_retain_days_days_up_to_the_runs_day():
    assert cutoff(date(2024, 3, 1), 1) == date(2024, 3, 1)  # keep the run's day alone
    assert cutoff(date(2024, 3, 1), 30) == date(2024, 2, 1)  # 2024-02-01 .. 2024-03-01: 30 days (leap year)


def test_plan_shows_the_first_day_kept_and_the_delete_of_a_day():
    assert plan_retention(CFG.model_copy(update={"retain_days": None}), date(2024, 3, 1)) is None
    plan = plan_retention(CFG, date(2024, 3, 1))
    assert plan is not None
    assert (plan["retain_days"], plan["before"]) == (30, "2024-02-01")
    assert plan["statements"] == ['DELETE FROM "doc"."metrics" WHERE "ts" >= $1 AND "ts" < $2']
    assert plan["parameters"] == [["2024-01-31T00:00:00+00:00", "2024-02-01T00:00:00+00:00"]]
    assert "cratedb-export purge --table doc.metrics --before 2024-02-01 --dry-run" in plan["note"]


def test_refusals_name_every_refused_unit_with_its_days_and_reasons():
    days = (date(2024, 1, 1), date(2024, 1, 2))
    outcomes = [
        Outcome("partition (day = 1)", days, "refused", 40, ("2024-01-02: _SUCCESS is missing",)),
        Outcome("day 2024-01-03", (date(2024, 1, 3),), "purged", 20, (), 20),
    ]
    error = refusals(CFG, outcomes)
    assert error is not None
    assert str(error) == (
        "retention of doc.metrics deleted nothing of 1 unit(s): doc.metrics partition (day = 1) "
        "(2024-01-01..2024-01-02, 40 rows): REFUSED, nothing deleted: 2024-01-02: _SUCCESS is missing"
    )
    assert refusals(CFG, outcomes[1:]) is None
    assert (
        outcomes[1].describe("doc.metrics")
        == "doc.metrics day 2024-01-03 (2024-01-03, 20 rows): purged, 20 rows deleted"
    )
