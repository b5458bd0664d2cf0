"""The Push&Pull listener: stay connected to the portal's push server, wake the drainer.

It never reads the offline queue: on an ``event_offline`` entry for our connector id it
emits a ``"push"`` wake (§8.7) and the drainer does the rest. Protocol per digest §8
(seed L2052–2201) with readings A21–A27:

* config from the injected ``get_config()`` (``pull.application.config.get``), every
  channel subscribed; renewed ``renew_margin`` seconds before the first channel end;
* WebSocket first (``websockets``), long polling (``httpx``) after the 5th consecutive
  WebSocket failure (:class:`~connector.core.reconnect.TransportPolicy`);
* reconnects follow the ladder (:class:`~connector.core.reconnect.Ladder`) and carry
  ``mid`` so the server replays what was missed;
* ``channel_expire`` (``reconnect``/``get_config``), ``config_expire`` and
  ``server_restart`` (a random 10–120 s wait first);
* a version ≥ 5 server is logged as unsupported and re-checked hourly; the safety poll
  (:mod:`connector.adapters.safety_poll`) keeps the drain going meanwhile.

Every (re)connection also emits a ``"connected"`` wake (the drain after a reconnect);
wire ``on_connect`` to :meth:`SafetyPoll.restart` so the safety interval restarts there.
``stats`` (:class:`ListenerStats`) feeds health and metrics. Channel ids are credentials
of a sort: logs name the host, never the URL.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx

from connector.adapters.pull_transports import (
    End,
    Outcome,
    WebSocketOptions,
    long_poll_session,
    websocket_session,
)
from connector.adapters.pull_wake import (
    AsyncClock,
    SystemClock,
    WakeSink,
    cancel_and_wait,
    emit_wake,
)
from connector.core.pull_config import (
    Cursor,
    PullConfig,
    PullConfigError,
    connection_url,
    parse_config,
    renew_at,
)
from connector.core.pull_frames import FrameError, parse_frames
from connector.core.pull_messages import (
    ChannelExpire,
    ConfigExpire,
    Control,
    ServerRestart,
    is_offline_wake,
    parse_control,
)
from connector.core.reconnect import Backoff, Ladder, Transport, TransportPolicy, Uniform

log = logging.getLogger("connector.pull")

GetConfig = Callable[[], Awaitable[Mapping[str, Any]]]

_SEEN_MIDS = 100


@dataclass
class ListenerStats:
    """Counters for health and metrics."""

    state: str = "starting"
    transport: str | None = None
    connects: int = 0
    failures: int = 0
    messages: int = 0
    wakes: int = 0
    duplicates: int = 0
    frames_skipped: int = 0
    frames_rejected: int = 0
    config_fetches: int = 0
    controls: dict[str, int] = field(default_factory=dict)
    #: the latest reconnect delays in seconds, newest last
    delays: deque[float] = field(default_factory=lambda: deque(maxlen=50))


class PullListener:
    """Run with :meth:`run` (until cancelled). See the module docstring."""

    def __init__(
        self,
        *,
        get_config: GetConfig,
        connector_id: str,
        wake: WakeSink,
        http: httpx.AsyncClient,
        clock: AsyncClock | None = None,
        rng: Uniform | None = None,
        ladder: Ladder | None = None,
        switch_after: int = 5,
        renew_margin: float = 300.0,
        control_delay: tuple[float, float] = (10.0, 120.0),
        unsupported_recheck: float = 3600.0,
        long_poll_timeout: float = 60.0,
        ws_open_timeout: float = 10.0,
        ws_ping_interval: float | None = 20.0,
        ws_stable_after: float = 30.0,
        ws_proxy: str | Literal[True] | None = True,
        min_session: float = 60.0,
        prefer_secure: bool = True,
        on_connect: Callable[[], None] | None = None,
    ) -> None:
        self._get_config = get_config
        self._connector_id = connector_id
        self._wake = wake
        self._http = http
        self._clock = clock or SystemClock()
        self._rng: Uniform = rng or random.Random()
        self._backoff = Backoff(ladder or Ladder())
        self._policy = TransportPolicy(rng=self._rng, switch_after=switch_after)
        self._renew_margin = renew_margin
        self._control_delay = control_delay
        self._unsupported_recheck = unsupported_recheck
        self._long_poll_timeout = long_poll_timeout
        self._ws_options = WebSocketOptions(
            ws_open_timeout, ws_ping_interval, ws_stable_after, proxy=ws_proxy
        )
        self._min_session = min_session
        self._prefer_secure = prefer_secure
        self._on_connect = on_connect
        self._config: PullConfig | None = None
        self._renew_at = 0.0
        self._cursor = Cursor()
        self._session_transport = Transport.WEBSOCKET
        self._seen: deque[str] = deque(maxlen=_SEEN_MIDS)
        self.stats = ListenerStats()

    @property
    def cursor(self) -> Cursor:
        """The history cursor sent on the next connection (last ``mid``/``tag``/``time``)."""
        return self._cursor

    async def run(self) -> None:
        """Listen until cancelled; never returns on its own."""
        delay = 0.0
        while True:
            if delay > 0:
                self.stats.delays.append(delay)
                await self._clock.sleep(delay)
            if self._config is None:
                config = await self._fetch_config()
                if config is None:
                    delay = self._backoff.failed()
                    continue
                if not config.supported:
                    self.stats.state = "unsupported"
                    log.error(
                        "pull: server version %d (JSON-RPC) is not supported; no push "
                        "wakes, relying on the safety poll; re-checking in %.0f s",
                        config.version,
                        self._unsupported_recheck,
                    )
                    delay = self._unsupported_recheck
                    continue
                self._config = config
                self._set_renewal(config)
            outcome = await self._session(self._config)
            delay = self._after(outcome)

    async def _fetch_config(self) -> PullConfig | None:
        self.stats.config_fetches += 1
        try:
            config = parse_config(await self._get_config())
        except PullConfigError as exc:
            log.warning("pull: unusable config: %s", exc)
            return None
        except Exception as exc:  # the REST client's errors: retry on the ladder
            log.warning("pull: pull.application.config.get failed: %s", type(exc).__name__)
            return None
        log.info("pull: config version %d, %d channel(s)", config.version, len(config.channels))
        return config

    def _set_renewal(self, config: PullConfig) -> None:
        """Fetch the config again ``renew_margin`` s before the first channel ends.

        Inside the margin already (the server keeps handing out a channel until it
        ends), wait for the end itself; channels that ended already (clock skew, a stale
        answer) get ``min_session`` seconds so the listener never spins.
        """
        now = self._clock.time()
        at = renew_at(config, fetched_at=now, margin=self._renew_margin)
        if at <= now:
            at = renew_at(config, fetched_at=now, margin=0.0) + 1.0
            if at <= now:
                log.warning("pull: the config's channels have already ended")
                at = now + self._min_session
        self._renew_at = at

    def _transport(self, config: PullConfig) -> Transport:
        now = self._clock.monotonic()
        ws = config.websocket_base(prefer_secure=self._prefer_secure)
        lp = config.long_polling_base(prefer_secure=self._prefer_secure)
        transport = self._policy.current(now)
        if transport is Transport.WEBSOCKET and ws is None:
            self._policy.switch_to_long_polling(now)
            return Transport.LONG_POLLING
        if transport is Transport.LONG_POLLING and lp is None:
            return Transport.WEBSOCKET
        return transport

    async def _session(self, config: PullConfig) -> Outcome:
        transport = self._transport(config)
        self._session_transport = transport
        self.stats.transport = transport.value
        self.stats.state = "connecting"
        timeout = self._renew_at - self._clock.time()
        deadline_end = End.RENEW
        if transport is Transport.LONG_POLLING and self._policy.retry_at is not None:
            retry_in = self._policy.retry_at - self._clock.monotonic()
            if retry_in < timeout:
                timeout, deadline_end = retry_in, End.RETRY_WEBSOCKET
        if timeout <= 0:
            return deadline_end
        work = (
            self._websocket(config) if transport is Transport.WEBSOCKET else self._long_poll(config)
        )
        task = asyncio.ensure_future(work)
        timer = asyncio.ensure_future(self._clock.sleep(timeout))
        try:
            await asyncio.wait({task, timer}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not task.done():
                await cancel_and_wait((task,))
            await cancel_and_wait((timer,))
        if task.cancelled():
            return deadline_end
        error = task.exception()
        if error is not None:
            log.error("pull: session failed unexpectedly: %s", type(error).__name__)
            return End.FAILED
        return task.result()

    def on_worked(self, transport: Transport) -> None:
        """The connection proved usable: reset the ladder (and the WebSocket count)."""
        self._backoff.succeeded()
        if transport is Transport.WEBSOCKET:
            self._policy.websocket_opened()

    def on_connected(self, transport: Transport, host: str) -> None:
        """Transport callback: a connection opened (wake the drainer, count it)."""
        self.stats.connects += 1
        self.stats.state = "connected"
        log.info("pull: connected to %s over %s", host, transport.value)
        emit_wake(self._wake, "connected")
        if self._on_connect is not None:
            self._on_connect()

    async def _websocket(self, config: PullConfig) -> Outcome:
        base = config.websocket_base(prefer_secure=self._prefer_secure) or ""
        return await websocket_session(
            self, lambda: connection_url(base, config, self._cursor), self._clock, self._ws_options
        )

    async def _long_poll(self, config: PullConfig) -> Outcome:
        base = config.long_polling_base(prefer_secure=self._prefer_secure) or ""
        return await long_poll_session(
            self,
            self._http,
            lambda: connection_url(base, config, self._cursor),
            self._long_poll_timeout,
        )

    def on_last_mid(self, mid: str) -> None:
        """Transport callback: the server says the last message id is ``mid``."""
        self._cursor = Cursor(mid=mid, tag=self._cursor.tag, time=self._cursor.time)

    def on_frame(self, data: bytes | str) -> Control | None:
        """Parse one frame: move the cursor, wake on our event_offline, return a control."""
        try:
            frames = parse_frames(data)
        except FrameError as exc:
            self.stats.frames_rejected += 1
            log.warning("pull: rejected a frame: %s", exc)
            return None
        if frames.skipped:
            self.stats.frames_skipped += frames.skipped
            log.warning("pull: skipped %d malformed message(s)", frames.skipped)
        control: Control | None = None
        for message in frames.messages:
            if message.mid is not None:
                if message.mid in self._seen:
                    self.stats.duplicates += 1
                    continue
                self._seen.append(message.mid)
            if message.mid or message.tag or message.time:
                self._cursor = Cursor(
                    mid=message.mid or self._cursor.mid,
                    tag=message.tag or self._cursor.tag,
                    time=message.time or self._cursor.time,
                )
            self.stats.messages += 1
            if is_offline_wake(message, self._connector_id):
                self.stats.wakes += 1
                emit_wake(self._wake, "push")
            found = parse_control(message)
            if found is not None and control is None:
                control = found
        return control

    def _after(self, outcome: Outcome) -> float:
        """Act on how a session ended; return the delay before the next one."""
        self.stats.state = "reconnecting"
        if isinstance(outcome, ChannelExpire | ConfigExpire | ServerRestart):
            name = type(outcome).__name__
            self.stats.controls[name] = self.stats.controls.get(name, 0) + 1
        now = self._clock.monotonic()
        if isinstance(outcome, ChannelExpire):
            log.info("pull: channel_expire (%s)", outcome.action)
            if outcome.new_channel is not None and self._config is not None:
                self._config = self._config.replace_channel(outcome.channel_id, outcome.new_channel)
                self._set_renewal(self._config)
            else:
                self._config = None
            return 0.0
        if isinstance(outcome, ConfigExpire | ServerRestart):
            self._config = None
            delay = self._rng.uniform(*self._control_delay)
            log.info("pull: %s; reconnecting in %.0f s", type(outcome).__name__, delay)
            return delay
        if outcome is End.RENEW:
            log.info("pull: a channel is about to expire; fetching the config again")
            self._config = None
            return 0.0
        if outcome is End.RETRY_WEBSOCKET:
            log.info("pull: trying the WebSocket again")
            return 0.0
        self.stats.failures += 1
        if outcome is End.WRONG_CHANNEL:
            self._config = None  # fetch fresh channels; climb the ladder all the same
            return self._backoff.failed()
        switched = False
        if self._session_transport is Transport.WEBSOCKET and outcome is End.FAILED:
            switched = self._policy.websocket_failed(now) is Transport.LONG_POLLING
        if switched:
            log.warning(
                "pull: WebSocket keeps failing; long polling %s",
                "for good" if self._policy.permanent else "for a while",
            )
            self._backoff.succeeded()
        delay = self._backoff.failed()
        if self._backoff.failures >= 2:
            self._config = None  # a channel may be wrong or gone: fetch it again
        return delay
