"""The Push&Pull REST method ``pull.application.config.get`` (scope ``pull``): a thin
wrapper over ``portal.pull.config_for`` (the answer is built in ``pull_config``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from connector.emulator.registry import MethodResult, registry

if TYPE_CHECKING:
    from connector.emulator.context import CallContext
    from connector.emulator.portal_view import PortalView


@registry.method("pull.application.config.get", scope="pull")
def _config_get(portal: PortalView, ctx: CallContext, params: dict[str, Any]) -> MethodResult:
    return MethodResult(portal.pull.config_for(ctx, params))
