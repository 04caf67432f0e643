"""Filters cannot leave their parentheses, and a count that a filter could fool does not exist.

A corpus of escape attempts goes through the configuration check; every one that passes is then
exported for real (local PostgreSQL + S3) and must stay inside the day. Shape-changing filters that
got past validation (simulated by skipping it) are caught by the window guard of the ``stream``
engine and, independently, by the structural row count.
"""

from __future__ import annotations

from datetime import date

import pytest

from cratedb_airflow_export.errors import ConfigError
from cratedb_airflow_export.loading import parse_tables
from cratedb_airflow_export.windows import Window
from tests.samples import ACCEPTED, ENTRY, shape_changing

DAY = date(2024, 1, 4)
WINDOW = Window.for_day(DAY)

REFUSED = {
    "1=1) OR (1=1": "unbalanced parentheses",
    "name = 'x') OR ('a' = 'a": "an unterminated quote",
    "E'\\'' = name) OR (1=1": "an escape string (E'...')",
    "name = E'x\\' OR 1=1 --'": "an escape string (E'...')",
    "$$x$$ = name) OR (true": "dollar quoting",
    "$tag$)$tag$ = name": "dollar quoting",
    "U&'\\0029' = name": "'&' (it starts Unicode escape strings",
    "name = 'a' -- ) OR (1=1": "must not contain SQL comments",
    "name = 'a' /* ) OR (1=1 */": "must not contain SQL comments",
    "name = 'a'; DELETE FROM doc.metrics": "filter must be one SQL condition; ';' is not allowed",
    "hash_id IN (SELECT hash_id FROM doc.metrics)": "a subquery or statement (SELECT)",
    "EXISTS (SELECT 1)": "a subquery or statement (EXISTS)",
    "name IN ('a') UNION SELECT 1": "a subquery or statement (UNION)",
    "nextval('some_seq') > 0": "the function nextval(...)",
    "pg_sleep(10) IS NOT NULL": "the function pg_sleep(...)",
    "lo_import('/etc/passwd') > 0": "the function lo_import(...)",
    "current_setting('search_path') = 'x'": "the function current_setting(...)",
    "\"lower\"(name) = 'x'": 'the function "lower"(...)',
    "metrics.name = 'cpu'": "a qualified name",
    "name = 'a\\') OR (1=1 --'": "must not contain SQL comments",
    "name = 'a\\' OR '1'='1'": "a backslash in a string",  # one string where backslashes escape
    "name = X'29'": "a prefixed string literal (X'...')",
    "name = B'1'": "a bit string",
    "name = $1": "a bind parameter ($1)",
    "name = ?": "a bind parameter (?)",
    "(name = 'a'))((name = 'b'": "unbalanced parentheses",
    "tags['host']) OR (tags['host'] = 'x'": "unbalanced parentheses",
    "\"na)me\" = 'x') OR (1=1": "unbalanced parentheses",
    "name = 'a' OR 1=1)--": "must not contain SQL comments",
}


def test_the_corpus_is_large():
    assert len(REFUSED) + len(ACCEPTED) >= 20 and len(REFUSED) >= 20


@pytest.mark.parametrize(("condition", "reason"), list(REFUSED.items()))
def test_escape_attempts_are_refused_naming_entry_and_field(condition, reason):
    with pytest.raises(ConfigError) as failure:
        parse_tables([{**ENTRY, "filter": condition}])
    text = str(failure.value)
    assert text.startswith("TABLES: entry 0 (table 'doc.metrics'): field 'filter': ")
    assert reason in text


def test_the_count_holds_the_window_in_a_subquery():
    from cratedb_airflow_export import sql

    cfg = shape_changing("lake", "doc.metrics")
    count = sql.count_window(cfg, WINDOW)
    assert count.wire_sql == (
        'SELECT count(*) FROM (SELECT * FROM "doc"."metrics" WHERE "timestamp" >= $1 AND "timestamp" < $2) '
        'AS "window_rows" WHERE (1=1) OR (1=1)'
    )
