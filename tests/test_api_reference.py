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
        "AND (prosecdef OR proname LIKE 'read%' "
        "OR proname IN ('stream_version', 'load_snapshot', 'load_checkpoint', 'is_readable'))").fetchall()
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


PUBLIC_FUNCTION_SECTIONS = {
    "append_event": "### `finam.append_event`",
    "append_events": "### `finam.append_events`",
    "append_batch": "### `finam.append_batch`",
    "save_snapshot": "### `finam.save_snapshot`",
    "stream_version": "### `finam.stream_version",
    "read_stream": "### `finam.read_stream(",
    "read_stream_backward": "### `finam.read_stream_backward",
    "read_all": "### `finam.read_all",
    "read_category": "### `finam.read_category",
    "load_snapshot": "### `finam.load_snapshot",
    "register_listener": "## Wake-ups",
    "is_readable": "### `finam.is_readable",
    "load_checkpoint": "### `finam.load_checkpoint",
    "advance_checkpoint": "### `finam.advance_checkpoint",
    "delete_checkpoint": "### `finam.delete_checkpoint",
}


def _section(header: str) -> str:
    start = API_REFERENCE.index(header)
    following = [API_REFERENCE.find(marker, start + len(header)) for marker in ("\n### ", "\n## ")]
    ends = [index for index in following if index != -1]
    return API_REFERENCE[start:min(ends) if ends else None]


def test_every_public_function_has_psql_python_and_node_examples():
    for function, header in PUBLIC_FUNCTION_SECTIONS.items():
        section = _section(header)
        for fence in ("```sql", "```python", "```js"):
            assert fence in section, f"{function}: no {fence} example"
        assert function in section.split("```sql", 1)[1], f"{function}: the psql example does not call it"
