"""The Push&Pull hub's run-time switches (``PullHub.settings``): a leaf dataclass read by
the hub, the config answer (``pull_config``) and the connection endpoints."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class PullSettings:
    """Switches a test or the control surface may flip at run time.

    * ``version`` — reported ``server.version`` and the framing of new connections
      (≤3 NGINX markers, 4 JSON array with ``format=json``, ≥5 JSON-RPC).
    * ``extra_in_text`` — ``extra`` inside ``text`` (default) or next to it.
    * ``long_polling_key`` — ``"documented"`` (``long_polling_secure``), ``"misspelled"``
      (``long_pooling_secure``, as newer servers answer) or ``"both"``.
    * ``client_id_location`` — ``clientId`` under ``"server"`` (seed), ``"top"`` or ``"both"``.
    * ``mode`` — ``"shared"`` (cloud: ``clientId`` required on connect) or ``"personal"``.
    * ``hold_timeout`` — seconds a long-poll request waits before answering 304.
    * ``replay_once`` — a given ``mid`` replays history only once per channel set.
    * ``announce_reopen`` — reopening an expired channel sends ``channel_expire``
      (``reconnect`` + ``new_channel``) on the expired one, for clients still on it.
    """

    version: int = 4
    extra_in_text: bool = True
    long_polling_key: str = "documented"
    client_id_location: str = "server"
    mode: str = "shared"
    websocket_enabled: bool = True
    hold_timeout: float = 25.0
    history_limit: int = 1000
    replay_once: bool = True
    announce_reopen: bool = True
    server_name: str = ""
    revision: int = 19
    revision_mobile: int = 1
