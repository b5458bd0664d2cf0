"""``b24-connector emulator``: serve the built-in Bitrix24 emulator on loopback."""

from __future__ import annotations

import click


@click.command()
@click.option("--port", type=int, default=8024, show_default=True, help="Loopback port.")
@click.option(
    "--seed",
    type=int,
    default=None,
    help="Seed the CRM with a deterministic demo set (20 companies, 30 contacts, "
    "10 leads, 15 deals) made from this number.",
)
@click.option(
    "--rate-limit",
    type=float,
    default=None,
    help="Leak rate, requests/s (default: the plan's; 0 turns the limiter off).",
)
@click.option("--rate-burst", type=int, default=None, help="Bucket size, requests.")
@click.option(
    "--plan",
    default="pro",
    show_default=True,
    type=click.Choice(["basic", "standard", "professional", "pro", "nfr", "enterprise"]),
    help="Plan profile (feature switches and limits).",
)
@click.option(
    "--tls", is_flag=True, help="Serve HTTPS with a throwaway test CA (its PEM path is printed)."
)
def emulator(
    port: int,
    seed: int | None,
    rate_limit: float | None,
    rate_burst: int | None,
    plan: str,
    tls: bool,
) -> None:
    """Serve the built-in Bitrix24 emulator on 127.0.0.1 and print how to point the
    connector at it (B24_* variables and the auth set line). Stop with Ctrl-C."""
    from connector.emulator.server import serve

    serve(port=port, seed=seed, rate_limit=rate_limit, rate_burst=rate_burst, tls=tls, plan=plan)
