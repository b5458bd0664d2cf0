"""``b24-connector run``: the worker, as a service (systemd, a container)."""

from __future__ import annotations

import asyncio

import click


async def run_worker(
    poll_interval: float, listen: bool, push_interval: float = 1.0, log_format: str | None = None
) -> None:
    import logging
    from datetime import timedelta

    from connector.adapters.startup_heap import freeze_startup_heap
    from connector.adapters.store.workers import WorkerRegistry
    from connector.service import wiring
    from connector.service.health import Metrics
    from connector.service.logs import configure
    from connector.service.worker import install_signal_handlers
    from connector.service.worker_upkeep import Keep

    cfg = wiring.settings()
    root = logging.getLogger()
    configure(min(root.level or logging.INFO, logging.INFO), log_format or cfg.log_format)
    mappings = wiring.mappings(cfg)
    engine = wiring.ready_engine(cfg)
    health = (cfg.metrics_host, cfg.metrics_port) if cfg.metrics_port is not None else None
    try:
        metrics = Metrics(engine)
        async with wiring.portal_session(cfg, engine, observer=metrics.observe_request) as session:
            worker = wiring.worker(
                session.client,
                session.http,
                engine,
                mappings,
                cfg.connector_id,
                registry=WorkerRegistry(engine, cfg.connector_id, lease_s=cfg.worker_lease),
                writer=wiring.erp_writer(cfg, mappings),
                queue_limit=cfg.queue_limit,
                metrics=metrics,
                poll_interval=poll_interval,
                push_interval=push_interval,
                listen=listen,
                health=health,
                keep=Keep(
                    journal=timedelta(hours=cfg.journal_keep_hours),
                    outbox=timedelta(days=cfg.outbox_keep_days),
                    every=cfg.prune_interval,
                ),
            )
            metrics.watch(
                governor=lambda: session.governor,
                oauth=lambda: session.oauth,
                listener=lambda: worker.listener,
            )
            install_signal_handlers(worker)
            freeze_startup_heap()  # composed: the collector stops re-scanning all of it
            stats = await worker.run()
    finally:
        engine.dispose()
    t = stats.totals
    click.echo(
        f"stopped: {stats.wakes} wakes, {t.records} queue records, "
        f"{t.conflicts} conflicts, {t.bad} not synced, {stats.failures} failed drains; "
        f"pushed {stats.pushed.records} ERP records ({stats.pushed.failed} refused, "
        f"{stats.push_failures} failed push rounds)"
    )


@click.command()
@click.option(
    "--poll-interval",
    type=float,
    default=60.0,
    show_default=True,
    help="Seconds between safety polls of the queue (a push is only a hint).",
)
@click.option(
    "--push-interval",
    type=float,
    default=1.0,
    show_default=True,
    help="Seconds between looks at the ERP's outbox.",
)
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default=None,
    help="Log lines as text with key=value details, or one JSON object per line "
    "(default: B24_LOG_FORMAT, else text).",
)
@click.option(
    "--no-listen", is_flag=True, help="Do not connect to Push&Pull; rely on the safety poll alone."
)
def run(
    poll_interval: float, push_interval: float, log_format: str | None, no_listen: bool
) -> None:
    """Run the worker: listen on Push&Pull, drain the queue on every wake, push the ERP's
    outbox, until SIGTERM.

    On SIGTERM or SIGINT the batch in flight is finished and cleared, then it exits 0.
    """
    asyncio.run(run_worker(poll_interval, not no_listen, push_interval, log_format))
