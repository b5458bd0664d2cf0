"""``b24-connector conflicts list|show|resolve``: fields changed on both sides, for a person."""

from __future__ import annotations

import asyncio
import getpass
import sys
from typing import Any

import click

from connector.errors import ConfigError
from connector.service.output import emit_json

_json = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")


@click.group()
def conflicts() -> None:
    """Inspect and resolve fields changed on both sides."""


def _rows(entity: str | None, everything: bool) -> list[dict[str, Any]]:
    from connector.adapters.store.conflict_rows import conflict_list
    from connector.service import wiring

    engine = wiring.ready_engine(wiring.settings())
    try:
        with engine.connect() as conn:
            return conflict_list(conn, entity=entity, everything=everything)
    finally:
        engine.dispose()


@conflicts.command("list")
@click.option("--entity", default=None, help="Only this entity (crm.company …).")
@click.option("--all", "everything", is_flag=True, help="Resolved and ignored ones too.")
@_json
def conflicts_list(entity: str | None, everything: bool, as_json: bool) -> None:
    """List open conflicts (with --all, closed ones too)."""
    rows = _rows(entity, everything)
    if as_json:
        emit_json(rows)
        return
    if not rows:
        click.echo("no open conflicts" if not everything else "no conflicts")
        return
    for r in rows:
        fields = ", ".join(sorted(r["fields"] or {}))
        click.echo(
            f"{r['id']:>5}  {r['status']:<8} {r['entity']} {r['b24_id']} (ERP {r['erp_key']})  "
            f"{fields}  first seen {r['created_at']:%Y-%m-%d %H:%M}"
            f"  last seen {(r['last_seen_at'] or r['created_at']):%Y-%m-%d %H:%M}"
        )


@conflicts.command("show")
@click.argument("conflict_id", type=int)
@_json
def conflicts_show(conflict_id: int, as_json: bool) -> None:
    """Show one conflict: base, portal and ERP value of every field, the changed sides marked."""
    from connector.service import wiring
    from connector.service.resolution import load_conflict

    engine = wiring.ready_engine(wiring.settings())
    try:
        row = load_conflict(engine, conflict_id)
    finally:
        engine.dispose()
    if as_json:
        emit_json(row)
        return
    from rich.console import Console
    from rich.table import Table

    times = row.get("times") or {}
    title = (
        f"conflict {row['id']} · {row['entity']} {row['b24_id']} · ERP key {row['erp_key']} · "
        f"{row['status']}"
    )
    table = Table(title=title, title_justify="left")
    for column in ("field", "base", "portal", "ERP"):
        table.add_column(column)
    for name, sides in sorted((row["fields"] or {}).items()):
        base = sides.get("base")

        def cell(value: Any, base: Any = base) -> str:
            text = "—" if value in (None, "", []) else str(value)
            return f"{text} *" if value != base else text

        table.add_row(
            name,
            "—" if base in (None, "") else str(base),
            cell(sides.get("portal")),
            cell(sides.get("erp")),
        )
    console = Console(file=sys.stdout, width=110, force_terminal=False)
    console.print(table)
    click.echo("* changed since the base")
    click.echo(
        f"portal modified {times.get('portal') or '?'}; ERP modified {times.get('erp') or '?'}; "
        f"holds {len(row.get('message_ids') or [])} queue records; "
        f"first seen {row['created_at']}, last seen {row.get('last_seen_at') or row['created_at']}"
    )
    if row["status"] == "open":
        click.echo(
            f"resolve: b24-connector conflicts resolve {row['id']} --keep portal|erp "
            "[--field F] | --value FIELD=VALUE | --ignore"
        )
    else:
        click.echo(f"{row['status']} by {row.get('resolved_by')} at {row.get('resolved_at')}")


def _values(pairs: tuple[str, ...]) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise ConfigError(f"--value {pair!r}: write it as FIELD=VALUE")
        out[name.strip().upper()] = value
    return out


@conflicts.command("resolve")
@click.argument("conflict_id", type=int)
@click.option(
    "--keep", type=click.Choice(["portal", "erp"]), default=None, help="Keep this side's value."
)
@click.option("--field", "fields", multiple=True, help="Resolve only this field (repeatable).")
@click.option(
    "--value",
    "values",
    multiple=True,
    metavar="FIELD=VALUE",
    help="Write this value to both sides (repeatable).",
)
@click.option(
    "--ignore", is_flag=True, help="Accept both sides as they are; sync again once one changes."
)
@click.option("--by", default=None, help="Who resolves it (default: the OS user).")
def conflicts_resolve(
    conflict_id: int,
    keep: str | None,
    fields: tuple[str, ...],
    values: tuple[str, ...],
    ignore: bool,
    by: str | None,
) -> None:
    """Resolve a conflict, write both sides, and release the portal's held events."""
    from connector.service.resolution import Resolution

    if fields and keep is None:
        raise ConfigError("--field goes with --keep portal|erp")
    resolution = Resolution(
        conflict_id,
        keep=keep,
        fields=fields,
        values=_values(values),
        ignore=ignore,
        by=by or getpass.getuser(),
    )
    outcome = asyncio.run(_resolve(resolution))
    click.echo(outcome.message)


async def _resolve(resolution: Any) -> Any:
    from connector.service import wiring
    from connector.service.resolver import Resolver

    cfg = wiring.settings()
    mappings = wiring.mappings(cfg)
    engine = wiring.ready_engine(cfg)
    try:
        async with (
            wiring.portal_session(cfg, engine) as session,
            wiring.leased_services(cfg, engine, mappings, session.client) as services,
        ):
            return await Resolver(services.drainer, services.pusher, services.holds).resolve(
                resolution
            )
    finally:
        engine.dispose()
