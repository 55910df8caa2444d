"""Finam Core 0005: install the SQL API from its source files.

Each function, view, trigger and the privilege set lives in its own file under
db/functions, db/views, db/triggers and db/privileges (CREATE OR REPLACE), so a
DBA reads and reviews one object at a time. This step installs them in that
order (db/api_installer.py, shared with later re-installs such as 0007); its
rollback drops every routine and view of schema finam (which also drops the
triggers that use them).
"""

import importlib.util
from pathlib import Path

from yoyo import step

__depends__ = {"0004.create-listeners-table"}


def load_installer():
    """db/api_installer.py, loaded by path (db/migrations is not a package)."""
    path = Path(__file__).resolve().parent.parent / "api_installer.py"
    spec = importlib.util.spec_from_file_location("finam_db_api_installer", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


installer = load_installer()

steps = [step(installer.install_api, installer.drop_api)]
