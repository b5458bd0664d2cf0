"""The composition root: settings in, ready-to-use adapters and services out.

Every CLI verb and the worker build what they need here, so construction happens in one
place and nothing is built at import time: the engine, the mappings, the writer, the
portal session, per worker identity the drainer (its journal and record locks), the
pusher (its outbox claims) and the holds (:func:`sync_services`), and for ``run`` the
worker with its listener lock, peer wakes and Push&Pull listeners (:func:`worker`).
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
from sqlalchemy import Engine

from connector.adapters.mapping_files import load_mappings
from connector.adapters.oauth_flow import OAuthFlow
from connector.adapters.rate_governor import RateGovernor
from connector.adapters.rest_client import RestClient, RetryPolicy
from connector.adapters.store.database import make_engine
from connector.adapters.store.erp_writer import ErpWriter
from connector.adapters.store.rate_ledger import ledger_for
from connector.adapters.store.token_seal import TokenSeal
from connector.adapters.store.tokens import TokenStore
from connector.adapters.store.workers import WorkerRegistry
from connector.core.mapping_model import MappingSet
from connector.core.rate_bucket import BucketProfile
from connector.errors import ConfigError
from connector.settings import Settings, load_settings

if TYPE_CHECKING:
    from connector.adapters.pull_listener import GetConfig, PullListener
    from connector.service.drain_types import PortalCalls
    from connector.service.drainer import Drainer
    from connector.service.health import Metrics
    from connector.service.holds import Holds
    from connector.service.pusher import Pusher
    from connector.service.worker import Worker
    from connector.service.worker_peers import ListenerFactory
    from connector.service.worker_upkeep import Keep, WorkerPortal

log = logging.getLogger(__name__)


def settings() -> Settings:
    """Read the settings (environment, then ``.env``); raises ConfigError on bad values."""
    return load_settings()


def store_engine(cfg: Settings) -> Engine:
    """The SQLAlchemy engine for ``B24_DATABASE_URL``."""
    return make_engine(cfg.database_url)


def shipped_mappings_dir() -> Path:
    spec = importlib.util.find_spec("connector.default_mappings")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            "the shipped mappings are missing from this install; set B24_MAPPINGS_DIR"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def mappings_dir(cfg: Settings) -> Path:
    """``B24_MAPPINGS_DIR``; when left at its default and absent here, the shipped mappings."""
    folder = cfg.mappings_dir
    if not folder.exists() and folder == Path("mappings"):
        shipped = shipped_mappings_dir()
        log.info("no ./mappings folder; using the shipped mappings in %s", shipped)
        return shipped
    return folder


def mappings(cfg: Settings) -> MappingSet:
    """Load and validate the mapping files (MappingError, exit 2, names file/key/line)."""
    return load_mappings(mappings_dir(cfg))


def erp_writer(cfg: Settings, mappings: MappingSet) -> ErpWriter:
    """The ERP-table writer every direction shares (``B24_CLOCK_SKEW`` for newer_wins)."""
    return ErpWriter(mappings, skew=cfg.clock_skew)


def portal_host(cfg: Settings) -> str:
    """The portal's host name: the key of its tokens and rate bucket rows."""
    from urllib.parse import urlsplit

    portal_url, _, _ = cfg.require_portal()
    return urlsplit(portal_url).netloc


def token_store(cfg: Settings, engine: Engine, host: str) -> TokenStore:
    """The portal's tokens, sealed with ``B24_SECRET_KEY`` / ``B24_SECRET_KEY_FILE`` / the
    default key file (see ``adapters/store/token_seal.py``)."""
    key = cfg.secret_key.get_secret_value() if cfg.secret_key else None
    seal = TokenSeal.for_engine(engine, key=key, key_file=cfg.secret_key_file)
    return TokenStore(engine, host, seal)


@dataclass
class PortalSession:
    """Everything that talks to the portal, sharing one HTTP client."""

    client: RestClient
    oauth: OAuthFlow
    governor: RateGovernor
    http: httpx.AsyncClient
    tokens: TokenStore


def http_timeout(cfg: Settings, *, quick: bool = False) -> httpx.Timeout:
    """``B24_HTTP_TIMEOUT`` for work; for a quick look by an operator (``status``), one
    short try."""
    if quick:
        return httpx.Timeout(1.5, connect=1.0)
    return httpx.Timeout(cfg.http_timeout, connect=min(cfg.http_timeout, 10.0))


@asynccontextmanager
async def portal_session(
    cfg: Settings,
    engine: Engine,
    *,
    quick: bool = False,
    observer: Callable[[str, str], None] | None = None,
) -> AsyncIterator[PortalSession]:
    """A REST client for ``B24_PORTAL_URL``: OAuth from ``sync_token``, the rate governor
    (its bucket in ``sync_rate_bucket``, shared by every process on this database), and
    ``auth_connector`` = ``B24_CONNECTOR_ID`` on every call."""
    portal_url, client_id, secret = cfg.require_portal()
    host = portal_host(cfg)
    tokens = token_store(cfg, engine, host)
    stored = await asyncio.to_thread(tokens.load)
    if stored is None:
        raise ConfigError(f"no tokens stored for {host}; run: b24-connector auth set < token.txt")
    profile = BucketProfile(rate=cfg.rate_limit, burst=cfg.rate_burst)
    governor = RateGovernor(profile, ledger=ledger_for(engine, host))  # persisted, shared
    async with httpx.AsyncClient(timeout=http_timeout(cfg, quick=quick)) as http:
        oauth = OAuthFlow(
            tokens,
            http=http,
            oauth_url=cfg.oauth_url,
            client_id=client_id,
            client_secret=secret.get_secret_value(),
        )
        endpoint = stored.client_endpoint or f"{portal_url}/rest/"
        client = RestClient(
            http,
            endpoint,
            connector_id=cfg.connector_id,
            auth=oauth,
            governor=governor,
            retry=RetryPolicy(attempts=1) if quick else None,
            observer=observer,
        )
        yield PortalSession(client, oauth, governor, http, tokens)


@dataclass
class SyncServices:
    """A drainer and a pusher sharing one writer, under one worker lease, and the holds
    released through that drainer."""

    drainer: Drainer
    pusher: Pusher
    registry: WorkerRegistry
    holds: Holds


def sync_services(
    client: PortalCalls,
    engine: Engine,
    mappings: MappingSet,
    connector_id: str,
    registry: WorkerRegistry,
    *,
    writer: ErpWriter,
    queue_limit: int,
) -> SyncServices:
    """The drainer and the pusher of one worker identity: its journal entries and its
    outbox claims carry ``registry.id`` (they end with its lease), one writer for both;
    the drainer's record locks, and the holds it releases."""
    from connector.adapters.store.db_locks import RecordLocks
    from connector.adapters.store.journal import Journal
    from connector.adapters.store.outbox import OutboxStore
    from connector.service.drainer import Drainer
    from connector.service.holds import Holds
    from connector.service.pusher import Pusher

    drainer = Drainer(
        client,
        engine,
        mappings,
        connector_id,
        writer=writer,
        journal=Journal(engine, connector_id, registry.id),
        record_locks=RecordLocks(engine, connector_id),
        peers_alive=lambda: bool(registry.peers()),
        limit=queue_limit,
    )
    pusher = Pusher(
        client,
        engine,
        mappings,
        connector_id,
        writer=writer,
        outbox=OutboxStore(engine, worker=registry.id),
    )
    return SyncServices(drainer, pusher, registry, Holds(drainer))


def pull_listeners(
    http: httpx.AsyncClient, connector_id: str, options: Mapping[str, Any] | None = None
) -> ListenerFactory:
    """Push&Pull listeners on the session's HTTP client: the worker makes one each time it
    takes the listener lock, with its own hooks (``options``: ``PullListener``'s tuning)."""
    from connector.adapters.pull_listener import PullListener

    tuning = dict(options or {})

    def listener(
        *, get_config: GetConfig, wake: Callable[[str], object], on_connect: Callable[[], None]
    ) -> PullListener:
        return PullListener(
            get_config=get_config,
            connector_id=connector_id,
            wake=wake,
            http=http,
            on_connect=on_connect,
            **tuning,
        )

    return listener


def worker(
    client: WorkerPortal,
    http: httpx.AsyncClient,
    engine: Engine,
    mappings: MappingSet,
    connector_id: str,
    *,
    registry: WorkerRegistry | None = None,
    writer: ErpWriter | None = None,
    queue_limit: int | None = None,
    metrics: Metrics | None = None,
    listener_options: Mapping[str, Any] | None = None,
    poll_interval: float = 60.0,
    push_interval: float = 1.0,
    listen: bool = True,
    health: tuple[str, int] | None = None,
    keep: Keep | None = None,
) -> Worker:
    """``run``'s worker and everything it works with: its registry (a lease of its own
    unless given), the drainer, pusher and holds of that identity (:func:`sync_services`),
    the listener lock, the peer wakes (PostgreSQL) and the Push&Pull listeners."""
    from connector.adapters.store.db_locks import ListenerLock
    from connector.adapters.store.peer_wake import PeerWake
    from connector.service.drain_types import QUEUE_LIMIT
    from connector.service.health import Metrics
    from connector.service.worker import Worker

    registry = registry or WorkerRegistry(engine, connector_id)
    services = sync_services(
        client,
        engine,
        mappings,
        connector_id,
        registry,
        writer=writer or ErpWriter(mappings),
        queue_limit=QUEUE_LIMIT if queue_limit is None else queue_limit,
    )
    return Worker(
        client,
        engine,
        mappings,
        connector_id,
        drainer=services.drainer,
        pusher=services.pusher,
        holds=services.holds,
        registry=services.registry,
        listener_lock=ListenerLock(engine, connector_id),
        peer_wake=PeerWake(engine, connector_id),
        listeners=pull_listeners(http, connector_id, listener_options),
        metrics=metrics or Metrics(),
        poll_interval=poll_interval,
        push_interval=push_interval,
        listen=listen,
        health=health,
        keep=keep,
    )


@asynccontextmanager
async def leased_services(
    cfg: Settings, engine: Engine, mappings: MappingSet, client: RestClient
) -> AsyncIterator[SyncServices]:
    """For the verbs that reserve queue records or claim outbox rows (``sync --once``,
    ``conflicts resolve``, ``errors retry``): they hold a worker lease while they work,
    so a ``run`` worker on the same database never adopts their live reservations."""
    from connector.service.lease import holding_lease

    registry = WorkerRegistry(engine, cfg.connector_id, lease_s=cfg.worker_lease)
    async with holding_lease(registry):
        yield sync_services(
            client,
            engine,
            mappings,
            cfg.connector_id,
            registry,
            writer=erp_writer(cfg, mappings),
            queue_limit=cfg.queue_limit,
        )


def ready_engine(cfg: Settings) -> Engine:
    """The store engine, refusing a database that ``db upgrade`` has not brought to head."""
    from connector.adapters.store.migrate import require_head

    engine = store_engine(cfg)
    try:
        require_head(engine)
    except Exception:
        engine.dispose()
        raise
    return engine
