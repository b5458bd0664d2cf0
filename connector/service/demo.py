"""``b24-connector demo``: a whole sync on embedded defaults, in about a minute.

The built-in emulator serves on a loopback port with a seeded CRM; the connector uses a
fresh SQLite file and the shipped mappings, and goes through the same code paths as a
real deployment: ``db upgrade``, stored tokens, feature checks and offline bindings,
``backfill``, then portal edits (an add with a phone, an update, a delete) drained from the
offline queue, an ERP edit (plain SQL) pushed to the portal, and a field changed on both
sides held as a conflict, then listed, shown and resolved with the CLI in its own
process. Nothing leaves the machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from connector.adapters.store import demo_sql

DEMO_CONNECTOR = "demo_erp"


def _cli_env(cfg: Any, base_url: str) -> dict[str, str]:
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("B24_")}
    env.update(
        B24_PORTAL_URL=base_url,
        B24_OAUTH_URL=base_url,
        B24_CLIENT_ID=str(cfg.client_id),
        B24_CLIENT_SECRET=cfg.client_secret.get_secret_value(),
        B24_CONNECTOR_ID=cfg.connector_id,
        B24_DATABASE_URL=cfg.database_url,
        B24_MAPPINGS_DIR=str(cfg.mappings_dir),
    )
    return env


def _cli(args: list[str], env: dict[str, str], cwd: Path) -> str:
    """Run the CLI as an operator would, in its own process."""
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "connector", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return done.stdout + done.stderr


async def run_demo(
    workdir: Path,
    say: Callable[[str], None],
    keep_running: Callable[[], Any] | None = None,
    *,
    kept: bool = True,
    progress: Any = None,
) -> dict[str, Any]:
    """Run the demo in ``workdir`` (its SQLite file stays there); return what happened."""
    from connector.adapters.store import migrate
    from connector.adapters.store.erp_schema import sync_erp_schema
    from connector.core.oauth_tokens import parse_token_answer
    from connector.emulator.app import Emulator
    from connector.emulator.server import ServerThread
    from connector.service import wiring
    from connector.service.backfill import run_backfill
    from connector.service.bindings import ensure_bindings
    from connector.service.drainer import Drainer
    from connector.service.pusher import Pusher
    from connector.settings import load_settings

    emulator = Emulator(seed=1)
    emulator.seed_crm(companies=20, contacts=30, leads=10, deals=15)
    db_path = workdir / "demo.db"
    report: dict[str, Any] = {"database": str(db_path)}
    with ServerThread(emulator) as server:
        creds = emulator.install_app(scopes=("crm", "pull", "user"), base_url=server.base_url)
        cfg = load_settings(
            portal_url=server.base_url,
            oauth_url=server.base_url,
            client_id=creds["client_id"],
            client_secret=creds["client_secret"],
            connector_id=DEMO_CONNECTOR,
            database_url=f"sqlite:///{db_path}",
            mappings_dir=wiring.shipped_mappings_dir(),
        )
        say(
            f"1. Emulator on {server.base_url} with a seeded CRM "
            "(20 companies, 30 contacts, 10 leads, 15 deals)"
        )
        engine = wiring.store_engine(cfg)
        mappings = wiring.mappings(cfg)
        try:
            migrate.upgrade(engine)
            created = sync_erp_schema(engine, mappings).created_tables
            say(f"2. db upgrade: sync_ tables and {len(created)} ERP tables in {db_path}")
            host = wiring.portal_host(cfg)
            wiring.token_store(cfg, engine, host).save(
                parse_token_answer(host, creds, datetime.now(UTC))
            )
            async with wiring.portal_session(cfg, engine) as session:
                client = session.client
                bound = await ensure_bindings(client, mappings, cfg.connector_id)
                say(
                    f"3. Features checked; {len(bound.events)} offline events bound with "
                    f"auth_connector={cfg.connector_id}"
                )
                bar = progress if progress is not None else contextlib.nullcontext()
                with bar:  # a rich progress bar on a terminal (the backfill verb's own)
                    loaded = await run_backfill(
                        client,
                        engine,
                        mappings,
                        progress=progress,
                    )
                counts = {m.table: demo_sql.row_count(engine, m.table) for m in mappings}
                report["backfill"] = counts
                say(
                    "4. Backfill: "
                    + ", ".join(f"{t} {n}" for t, n in counts.items())
                    + f" ({sum(s.records for s in loaded.entities.values())} records)"
                )

                first = min(emulator.portal().crm.ids("company"))
                gone = min(emulator.portal().crm.ids("contact"))
                new = emulator.ui_add(
                    "crm.company",
                    {
                        "TITLE": "Demo Ltd",
                        "PHONE": [{"VALUE": "+1 555 0100", "VALUE_TYPE": "WORK"}],
                    },
                )
                emulator.ui_update("crm.company", first, {"COMMENTS": "edited in the portal"})
                emulator.ui_delete("crm.contact", gone)
                say(
                    "5. In the portal a user adds 'Demo Ltd' with a phone, edits company "
                    f"{first}, deletes contact {gone}"
                )
                drainer = Drainer(client, engine, mappings, cfg.connector_id)
                drained = await drainer.drain_until_empty()
                say(
                    f"6. Drained {drained.records} queue records in {drained.batches} batch: "
                    f"{drained.inserted} inserted, {drained.updated} updated, "
                    f"{drained.deleted} deleted"
                )
                report["drain"] = vars(drained)
                phones = demo_sql.company_phones(engine, new)
                say(
                    f"   erp_company now has 'Demo Ltd' (b24_id {new}) with phone "
                    f"{phones[0] if phones else '?'}; contact {gone} is marked deleted"
                )

                erp_url = f"sqlite:///{db_path}"  # the ERP's own connection
                second = sorted(emulator.portal().crm.ids("company"))[1]
                demo_sql.erp_edit_company(erp_url, second, "comments", "Edited in the ERP")
                pusher = Pusher(client, engine, mappings, cfg.connector_id)
                pushed = await pusher.push_until_empty()
                report["push"] = vars(pushed)
                say(
                    f"7. In the ERP, plain SQL edits company {second}'s comments; a trigger puts "
                    f"it in sync_outbox, the pusher sends it ({pushed.updated} update): the "
                    f"portal now says {emulator.portal().crm.get('company', second)['COMMENTS']!r}"
                )

                demo_sql.erp_edit_company(erp_url, first, "title", "Title from the ERP")
                emulator.ui_update("crm.company", first, {"TITLE": "Title from the portal"})
                held = await drainer.drain_until_empty()
                conflicts = demo_sql.conflicts_seen(engine)
                report["conflicts"] = len(conflicts)
                say(
                    f"8. Both sides changed company {first}'s title: {held.conflicts} conflict "
                    "kept for an operator; only that record is held in the portal"
                )
                env = _cli_env(cfg, server.base_url)
                for args in (
                    ["conflicts", "list"],
                    ["conflicts", "show", str(conflicts[0]["id"])],
                    [
                        "conflicts",
                        "resolve",
                        str(conflicts[0]["id"]),
                        "--keep",
                        "erp",
                        "--by",
                        "demo",
                    ],
                ):
                    say(f"   $ b24-connector {' '.join(args)}")
                    out = await asyncio.to_thread(_cli, args, env, workdir)
                    for line in out.rstrip().splitlines():
                        say(f"     {line}")
                report["resolved"] = demo_sql.conflict_statuses(engine)[0]
                say(
                    f"9. Resolved: the portal's title is now "
                    f"{emulator.portal().crm.get('company', first)['TITLE']!r}, the held "
                    "queue record was released"
                )

                rest = [e for e in emulator.requests() if e.kind == "rest"]
                marked = sum(1 for e in rest if e.auth_connector == cfg.connector_id)
                queue = emulator.queue_state()
                waiting = sum(1 for r in queue if r["ERROR"] == "0")
                held_records = sum(1 for r in queue if r["ERROR"] == "1")
                report.update(
                    rest_calls=len(rest),
                    with_auth_connector=marked,
                    queue_waiting=waiting,
                    queue_held=held_records,
                )
                say(
                    f"10. {len(rest)} REST calls, {marked} of them with auth_connector; "
                    f"queue: {waiting} waiting, {held_records} held"
                )
                if not kept:
                    return report
                say(
                    f"Look inside: sqlite3 {db_path} 'select b24_id, title, comments from "
                    "erp_company limit 5'"
                )
                if keep_running is not None:
                    say(
                        "Try the CLI against the running emulator (a throwaway demo app): "
                        "b24-connector status, outbox list, conflicts list --all, with"
                    )
                    for name, value in env.items():
                        if name.startswith("B24_"):
                            say(f"   export {name}={value}")
                    say("The emulator keeps running; Ctrl-C stops it.")
                    await keep_running()
        finally:
            engine.dispose()
    return report


def demo_workdir(path: Path | None) -> Path:
    if path is None:
        return Path(tempfile.mkdtemp(prefix="b24-demo-"))
    path.mkdir(parents=True, exist_ok=True)
    if (path / "demo.db").exists():
        (path / "demo.db").unlink()
    return path


def run(
    path: Path | None,
    say: Callable[[str], None],
    *,
    keep: bool = False,
    progress: Any = None,
) -> dict[str, Any]:
    """The demo in ``path`` (kept), or in a temporary folder removed afterwards."""
    import shutil

    workdir = demo_workdir(path)

    async def forever() -> None:
        await asyncio.Event().wait()

    try:
        kept = path is not None or keep
        return asyncio.run(
            run_demo(workdir, say, forever if keep else None, kept=kept, progress=progress)
        )
    except KeyboardInterrupt:
        return {"database": str(workdir / "demo.db"), "stopped": True}
    finally:
        if path is None and not keep:
            shutil.rmtree(workdir, ignore_errors=True)
