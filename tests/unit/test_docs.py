"""The README is a front page that reaches every page of docs/, and docs/configuration.md says
what the configuration model does (its keys and defaults), so the two cannot drift apart."""

from __future__ import annotations

import re
from datetime import timedelta

from pydantic_core import PydanticUndefined

from cratedb_airflow_export.config import TableExport
from tests.helpers import REPO as ROOT

README = ROOT / "README.md"
DOCS = ROOT / "docs"
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def table_rows(text: str) -> dict[str, str]:
    """``key -> default`` of the configuration table (rows ``| `key` | default | meaning |``)."""
    rows = {}
    for line in text.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) >= 3 and re.fullmatch(r"`[a-z_]+`", cells[0]):
            rows[cells[0].strip("`")] = cells[1]
    return rows


def documented(default: object) -> str | None:
    """How the table writes a plain default; None where it describes it in words."""
    if isinstance(default, bool) or default is None or default is PydanticUndefined:
        return None
    if isinstance(default, timedelta):
        return "`0`" if not default else None
    if isinstance(default, int):
        return str(default)
    if isinstance(default, str):
        return f"`{default}`"
    return None


def test_the_readme_is_a_front_page():
    text = README.read_text(encoding="utf-8")
    assert len(text.encode()) < 12_000
    assert text.splitlines()[2:5] == [
        "```bash",
        "make demo   # installs what is needed, runs the export DAG once on a local stack, prints what landed in S3",
        "make test   # installs what is needed, runs every test",
    ]


def test_every_docs_page_is_linked_from_the_readme_and_every_link_resolves():
    linked = set()
    for page in [README, *DOCS.glob("*.md")]:
        for target in LINK.findall(page.read_text(encoding="utf-8")):
            if "://" in target:
                continue
            resolved = (page.parent / target).resolve()
            assert resolved.exists(), f"{page.name} links to {target}, which does not exist"
            if page == README:
                linked.add(resolved)
    assert {p.resolve() for p in DOCS.glob("*.md")} <= linked


def test_the_configuration_page_lists_every_key_with_its_default():
    rows = table_rows((DOCS / "configuration.md").read_text(encoding="utf-8"))
    fields = TableExport.model_fields
    assert set(rows) == set(fields)
    for name, field in fields.items():
        if field.is_required():
            assert rows[name] == "required", name
        expected = documented(field.default)
        if expected is not None:
            assert rows[name] == expected, f"{name}: the page says {rows[name]}, the model {expected}"
