"""CLI verbs whose capability has not landed yet.

Each verb is registered with its final name, options and help text, and exits 1 with
``not implemented yet: <verb>`` until its feature lands (then it moves to its own module).
"""

from __future__ import annotations

import click

from connector.errors import NotImplementedYet

_json = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")


@click.group()
def conflicts() -> None:
    """Inspect and resolve fields changed on both sides."""


@conflicts.command("list")
@_json
def conflicts_list(as_json: bool) -> None:
    """List open conflicts."""
    raise NotImplementedYet("conflicts list")


@conflicts.command("show")
@click.argument("conflict_id", type=int)
@_json
def conflicts_show(conflict_id: int, as_json: bool) -> None:
    """Show one conflict: base, portal and ERP value of every field."""
    raise NotImplementedYet("conflicts show")


@conflicts.command("resolve")
@click.argument("conflict_id", type=int)
@click.option(
    "--keep", type=click.Choice(["portal", "erp"]), default=None, help="Keep this side's value."
)
@click.option("--field", "field", default=None, help="Resolve only this field.")
@click.option(
    "--value",
    "values",
    multiple=True,
    metavar="FIELD=VALUE",
    help="Write this value to both sides (repeatable).",
)
@click.option("--ignore", is_flag=True, help="Close the conflict without writing anything.")
def conflicts_resolve(
    conflict_id: int, keep: str | None, field: str | None, values: tuple[str, ...], ignore: bool
) -> None:
    """Resolve a conflict, write both sides, and release the portal's held events."""
    raise NotImplementedYet("conflicts resolve")


@click.command()
def demo() -> None:
    """Run a demo sync: the built-in emulator plus a local SQLite database."""
    raise NotImplementedYet("demo")


@click.group("auth")
def auth_placeholder() -> None:
    """Store and inspect the portal's OAuth tokens."""


@auth_placeholder.command("set")
@click.option("--refresh-token", required=True, help="The refresh token of the installed app.")
@click.option("--access-token", default=None, help="An access token issued with it.")
def auth_set(refresh_token: str, access_token: str | None) -> None:
    """Store the app's tokens for this portal."""
    raise NotImplementedYet("auth set")


@auth_placeholder.command("status")
@_json
def auth_status(as_json: bool) -> None:
    """Show token age, expiry, portal and scopes (never the tokens)."""
    raise NotImplementedYet("auth status")
