"""The answer of ``pull.application.config.get`` (digest §8.2); the hub's run-time
switches are ``pull_settings.PullSettings``, the REST method is in ``pull_methods``.

The answer: ``server{version, server_enabled, long_polling, long_polling_secure,
websocket_enabled, websocket, websocket_secure, publish_enabled, publish, publish_secure,
mode, hostname, config_timestamp, clientId}``, ``api{revision_web, revision_mobile}`` and
``channels{shared{id, start, end, type}, private{id, public_id, start, end, type}}``.
URLs are built from the request's base URL; every connection URL uses the request's own
scheme (``ws://`` for ``http``, ``wss://`` for ``https``), the ``*_secure`` keys included,
so a client on a plain-HTTP emulator can follow them. ``CACHE=Y|N`` is accepted (channels
are stored, so both agree); ``REOPEN=N`` returns an expired channel as it is.
Webhook callers get ``WRONG_AUTH_TYPE`` (the method works only in an app context).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

from connector.emulator.pull_settings import PullSettings
from connector.emulator.rest_errors import RestError

if TYPE_CHECKING:
    from collections.abc import Mapping

    from connector.emulator.context import CallContext
    from connector.emulator.portal_contract import PortalContract
    from connector.emulator.pull_channels import ChannelStore

__all__ = ["ConfigSource", "PullSettings", "build_config", "server_block"]


class ConfigSource(Protocol):
    """What the answer is built from: the portal's ``PullHub`` (``portal.pull``)."""

    @property
    def portal(self) -> PortalContract: ...

    @property
    def settings(self) -> PullSettings: ...

    @property
    def channels(self) -> ChannelStore: ...

    @property
    def push_client_id(self) -> str: ...

    @property
    def config_timestamp(self) -> int: ...


def _param(params: Mapping[str, Any], name: str, default: str) -> str:
    for key, value in params.items():
        if key.lower() == name.lower():
            return str(value)
    return default


def build_config(hub: ConfigSource, ctx: CallContext, params: Mapping[str, Any]) -> dict[str, Any]:
    """The ``pull.application.config.get`` result for the calling app."""
    if not ctx.client_id:
        raise RestError(
            "WRONG_AUTH_TYPE", "Current authorization type is denied for this method", 401
        )
    reopen = _param(params, "REOPEN", "Y").upper() != "N"
    _param(params, "CACHE", "Y")  # accepted; channels are stored, so Y and N agree
    iso = hub.portal.clock.iso
    shared = hub.channels.current(ctx.client_id, "shared", reopen=reopen)
    private = hub.channels.current(ctx.client_id, "private", reopen=reopen)
    result: dict[str, Any] = {
        "server": server_block(hub, ctx.base_url),
        "api": {
            "revision_web": hub.settings.revision,
            "revision_mobile": hub.settings.revision_mobile,
        },
        "channels": {"shared": shared.describe(iso), "private": private.describe(iso)},
    }
    if hub.settings.mode == "shared" and hub.settings.client_id_location in ("top", "both"):
        result["clientId"] = hub.push_client_id
    return result


def server_block(hub: ConfigSource, base_url: str) -> dict[str, Any]:
    parts = urlsplit(base_url or f"https://{hub.portal.domain}")
    scheme = "https" if parts.scheme == "https" else "http"
    ws_scheme = "wss" if scheme == "https" else "ws"
    host = parts.netloc or hub.portal.domain
    http_sub, ws_sub = f"{scheme}://{host}/sub/", f"{ws_scheme}://{host}/subws/"
    publish = f"{scheme}://{host}/pub/"
    s = hub.settings
    server: dict[str, Any] = {
        "version": s.version,
        "server_enabled": True,
        "long_polling": http_sub,
    }
    if s.long_polling_key in ("documented", "both"):
        server["long_polling_secure"] = http_sub
    if s.long_polling_key in ("misspelled", "both"):
        server["long_pooling_secure"] = http_sub
    server.update(
        {
            "websocket_enabled": s.websocket_enabled,
            "websocket": ws_sub,
            "websocket_secure": ws_sub,
            "publish_enabled": False,
            "publish": publish,
            "publish_secure": publish,
            "mode": s.mode,
            "hostname": parts.hostname or hub.portal.domain,
            "config_timestamp": hub.config_timestamp,
        }
    )
    if s.mode == "shared" and s.client_id_location in ("server", "both"):
        server["clientId"] = hub.push_client_id
    return server
