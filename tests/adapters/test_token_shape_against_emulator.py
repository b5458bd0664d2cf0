"""A token answer shaped exactly like the course's sample — ``expires_in`` and no
``expires`` or ``user_id`` — is refreshed, stored and timed from ``expires_in``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from connector.emulator.app import Emulator
from connector.emulator.server import ServerThread
from tests.service.test_sync_command import cli, setup_connector
from tests.service.test_worker import served  # noqa: F401  (fixture)


@pytest.mark.parametrize("shape", ["seed", "current"])
def test_a_token_answer_without_expires_is_timed_from_expires_in(
    served: tuple[Emulator, ServerThread],  # noqa: F811
    tmp_path: Path,
    shape: str,
) -> None:
    emulator, server = served
    emulator.set_token_shape(shape)
    env = setup_connector(emulator, server, f"sqlite:///{tmp_path}/c.db", tmp_path)
    synced = cli("sync", "--once", cwd=tmp_path, env=env)  # the first call refreshes
    assert synced.returncode == 0, synced.stderr
    status = cli("auth", "status", "--json", cwd=tmp_path, env=env)
    assert status.returncode == 0, status.stderr
    seconds = json.loads(status.stdout)["expires_in_s"]
    assert seconds is not None and 3000 < seconds <= 3600
