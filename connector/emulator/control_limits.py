"""Plan, limits and fault switches, part of the control API: ``set_plan``,
``set_limits`` (rate, burst, operating time, simulated method costs), ``set_faults`` /
``clear_faults``. Mixed into ``control.ControlAPI`` as :class:`LimitsControl`.
"""

from __future__ import annotations

from typing import Any

from connector.emulator.control_base import ControlBase, locked


class LimitsControl(ControlBase):
    """Plan, limiter and fault-injection operations on one portal."""

    @locked
    def set_plan(self, name: str, *, portal: str | None = None, **changes: Any) -> None:
        self.portal(portal).with_plan(name, **changes)

    @locked
    def set_limits(
        self,
        *,
        rate: float | None = None,
        burst: int | None = None,
        enabled: bool | None = None,
        operating_limit: float | None = None,
        operating_window: float | None = None,
        costs: dict[str, float | None] | None = None,
        operating_scope: str | None = None,
        reset: bool = False,
        portal: str | None = None,
    ) -> dict[str, Any]:
        """Override the plan's limiter, set simulated method costs (seconds per call),
        choose whose operating time adds up (``"caller"``/``"portal"``) and over how many
        seconds (``operating_window``, 600 on a real portal), empty the bucket."""
        limits = self.portal(portal).limits
        limits.configure(
            rate=rate,
            burst=burst,
            enabled=enabled,
            operating_limit=operating_limit,
            operating_window=operating_window,
        )
        if operating_scope is not None:
            if operating_scope not in ("caller", "portal"):
                raise ValueError("operating_scope is 'caller' or 'portal'")
            limits.operating_scope = operating_scope
        for method, seconds in (costs or {}).items():
            limits.set_cost(method, seconds)
        if reset:
            limits.reset()
        return limits.snapshot()

    @locked
    def set_faults(
        self,
        *,
        overload: bool | None = None,
        overload_status: int | None = None,
        fail_next: int | None = None,
        fail_methods: dict[str, int | None] | None = None,
        block_methods: dict[str, bool] | None = None,
        delay: float | None = None,
        method_delays: dict[str, float] | None = None,
        portal: str | None = None,
    ) -> dict[str, Any]:
        """Switch faults on or off; unnamed switches keep their state."""
        limits = self.portal(portal).limits
        faults = limits.faults
        if overload is not None:
            faults.overload = overload
        if overload_status is not None:
            faults.overload_status = int(overload_status)
        if fail_next is not None:
            faults.fail_next = int(fail_next)
        for method, times in (fail_methods or {}).items():
            limits.fail_method(method, times)
        for method, blocked in (block_methods or {}).items():
            limits.block_method(method, blocked)
        if delay is not None:
            faults.delay = float(delay)
        for method, seconds in (method_delays or {}).items():
            faults.method_delays[method.lower()] = float(seconds)
        return limits.snapshot()

    @locked
    def clear_faults(self, *, portal: str | None = None) -> None:
        self.portal(portal).limits.faults.clear()
