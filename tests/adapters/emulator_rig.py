"""Wiring the portal client to an in-process emulator, on a clock both sides share."""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx

from connector.adapters.clocks import ManualClock, VirtualClock
from connector.adapters.oauth_flow import OAuthFlow
from connector.adapters.rate_governor import RateGovernor
from connector.adapters.rest_client import RestClient, RetryPolicy
from connector.core.oauth_tokens import parse_token_answer
from connector.core.operating_budget import OperatingBudget
from connector.core.rate_bucket import BucketProfile
from connector.emulator.app import Emulator
from connector.emulator.clock import Clock as EmulatorClock
from tests.adapters.portal_fakes import MemoryTokens

BASE = "https://emulator.bitrix24.test"
CONNECTOR = "erp"


class EmulatorRig:
    """An emulator with an installed app, and a RestClient with OAuth and a governor."""

    def __init__(
        self,
        clock: ManualClock | VirtualClock | None = None,
        *,
        governor: bool = True,
        attempts: int = 6,
        budget: OperatingBudget | None = None,
        hooks: list[Callable[[httpx.Response], Any]] | None = None,
    ) -> None:
        self.clock = clock or ManualClock(start=datetime.now(UTC).timestamp())
        self.emulator = Emulator(clock=EmulatorClock(source=self.clock.now))
        answer = self.emulator.install_app(scopes=("crm", "pull", "user"))
        self.tokens = MemoryTokens(
            parse_token_answer(
                "emulator.bitrix24.test", answer, datetime.fromtimestamp(self.clock.now(), UTC)
            )
        )
        self.http = self.emulator.client(BASE, event_hooks={"response": hooks or []})
        self.flow = OAuthFlow(
            self.tokens,
            http=self.http,
            oauth_url=BASE,
            client_id=answer["client_id"],
            client_secret=answer["client_secret"],
            now=lambda: datetime.fromtimestamp(self.clock.now(), UTC),
        )
        limits = self.emulator.portal().limits
        self.governor = RateGovernor(
            BucketProfile(rate=limits.rate, burst=limits.burst),
            clock=self.clock,
            budget=budget,
        )
        self.client = RestClient(
            self.http,
            BASE + "/rest/",
            connector_id=CONNECTOR,
            auth=self.flow,
            governor=self.governor if governor else None,
            clock=self.clock,
            retry=RetryPolicy(attempts=attempts),
            rng=random.Random(7),
        )

    def rest_log(self) -> list[Any]:
        """Every REST request the portal saw (token requests go to the OAuth server)."""
        return [entry for entry in self.emulator.log if entry.kind != "oauth"]

    async def __aenter__(self) -> EmulatorRig:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.http.aclose()
