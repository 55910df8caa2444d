"""Finam Core 0008: SQL API 1.2.0 — malformed input is refused with FC003 and a message that names it.

Re-installs the whole API from its source files (db/api_installer.py, as 0005
and 0007 do). What changes against 1.1.0 (found by the bad-input catalogue,
tests/test_bad_input.py):

- ``load_snapshot``: a ``schema_version`` below 1 is FC003 (1.1.0 returned no
  row, as if the stream had no snapshot); NULL still means any layout.
- ``append_batch`` (and ``append_events``, which calls it): the precise error for a
  malformed batch walks the arrays by position, as the insert does; 1.1.0 walked
  subscripts 1..n, so for arrays whose subscripts start elsewhere
  (``'[0:1]={...}'``) it blamed the wrong event with "id must not be NULL".
- ``append_event``, ``append_batch`` (so ``append_events``) and
  ``advance_checkpoint``: in a session with ``synchronous_commit = off`` they set
  it to ``on`` for their transaction, so an acknowledged write survives a server
  crash (tests/test_db_crash.py lost acknowledged appends with ``off``). Other
  values (local, remote_write, remote_apply) are kept.
- ``schema_version()`` = '1.2.0'.

No routine is added or dropped and no grant changes. Rollback re-creates the
five routines as 1.1.0 had them, from db/releases/1.1.0/ (CREATE OR REPLACE
keeps their grants and comments' place), so the database is then as 1.1.0 left it.
"""

import importlib.util
from pathlib import Path

from yoyo import step

__depends__ = {"0007.install-api-1.1"}

RELEASE_1_1_0 = Path(__file__).resolve().parent.parent / "releases" / "1.1.0"


def load_installer():
    """db/api_installer.py, loaded by path (db/migrations is not a package)."""
    path = Path(__file__).resolve().parent.parent / "api_installer.py"
    spec = importlib.util.spec_from_file_location("finam_db_api_installer", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


installer = load_installer()


def back_to_1_1_0(connection):
    cursor = connection.cursor()
    for path in sorted(RELEASE_1_1_0.glob("*.sql")):
        cursor.execute(path.read_text(encoding="utf-8"))


steps = [step(installer.install_api, back_to_1_1_0)]
