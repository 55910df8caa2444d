"""db/API.md documents the whole SQL API, so the reference cannot drift from the code."""

import re

from conftest import REPO_ROOT

API_REFERENCE = (REPO_ROOT / "db" / "API.md").read_text(encoding="utf-8")


def test_every_function_is_documented(db):
    names = [row[0] for row in db.execute(
        "SELECT DISTINCT proname FROM pg_proc WHERE pronamespace = 'finam'::regnamespace ORDER BY 1")]
    assert len(names) >= 20
    missing = [name for name in names if not re.search(rf"\b{name}\b", API_REFERENCE)]
    assert missing == []


def test_every_argument_of_the_public_functions_is_documented(db):
    rows = db.execute(
        "SELECT proname, unnest(proargnames) FROM pg_proc "
        "WHERE pronamespace = 'finam'::regnamespace "
        "AND (prosecdef OR proname LIKE 'read%' OR proname IN ('stream_version', 'load_snapshot'))").fetchall()
    assert rows
    missing = sorted({f"{fn}.{arg}" for fn, arg in rows if not re.search(rf"\b{arg}\b", API_REFERENCE)})
    assert missing == []


def test_every_view_and_table_is_documented(db):
    names = [row[0] for row in db.execute(
        "SELECT relname FROM pg_class WHERE relnamespace = 'finam'::regnamespace AND relkind IN ('r', 'v')")]
    assert set(names) >= {"events", "snapshots", "listeners", "streams"}
    assert [name for name in names if f"finam.{name}" not in API_REFERENCE] == []


def test_every_sqlstate_raised_is_documented():
    raised = set()
    for path in (REPO_ROOT / "db").rglob("*.sql"):
        raised |= set(re.findall(r"ERRCODE = '(FC\d{3})'", path.read_text(encoding="utf-8")))
    assert raised == {"FC001", "FC002", "FC003", "FC004", "FC005"}
    for code in raised:
        assert f"`{code}`" in API_REFERENCE
