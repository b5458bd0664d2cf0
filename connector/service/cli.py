"""The ``b24-connector`` command line.

Exit codes: 0 ok, 1 failure, 2 usage or configuration error (one line naming what to fix).
"""

from __future__ import annotations

import logging
import sys

import click

from connector import __version__
from connector.adapters.malloc_arenas import limit_arenas
from connector.errors import ConnectorError
from connector.service.commands import db as db_commands
from connector.service.commands.backfill import backfill
from connector.service.commands.conflicts import conflicts
from connector.service.commands.demo import demo
from connector.service.commands.emulator import emulator
from connector.service.commands.errors import errors
from connector.service.commands.outbox import outbox
from connector.service.commands.queue import queue
from connector.service.commands.reconcile import reconcile
from connector.service.commands.run import run
from connector.service.commands.status import status
from connector.service.commands.sync import sync
from connector.service.output import fail


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="b24-connector")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
def cli(verbose: int) -> None:
    """Keep a Bitrix24 portal's CRM and a local SQL database in agreement, both ways.

    Settings come from B24_* environment variables, then a .env file.
    """
    from connector.service.logs import configure

    configure(logging.WARNING - 10 * min(verbose, 2))


def _attach() -> None:
    cli.add_command(db_commands.db)
    from connector.service.commands.auth import auth

    cli.add_command(auth)
    for command in (
        run,
        sync,
        backfill,
        reconcile,
        conflicts,
        errors,
        queue,
        outbox,
        status,
        emulator,
        demo,
    ):
        cli.add_command(command)


_attach()


def main(argv: list[str] | None = None) -> None:
    """Entry point of the console script: run the CLI, map errors to exit codes."""
    limit_arenas()  # before any thread: a flat RSS under the windows' threads
    try:
        cli.main(args=argv, prog_name="b24-connector", standalone_mode=False)
    except click.exceptions.Abort:
        fail("aborted")
        sys.exit(1)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except ConnectorError as exc:
        fail(exc.message)
        sys.exit(exc.exit_code)
    except Exception as exc:
        database = sys.modules.get("sqlalchemy.exc")  # loaded only if a verb used the store
        if database is None or not isinstance(exc, database.SQLAlchemyError):
            raise
        from connector.adapters.store.db_errors import store_error

        fail(store_error(exc).message)  # the store's failure in one line, not a traceback
        sys.exit(1)
    sys.exit(0)
