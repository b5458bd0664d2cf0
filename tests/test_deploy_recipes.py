"""The deployment recipes in deploy/ point at things that exist and settings that work."""

from __future__ import annotations

import re
from pathlib import Path

from connector.settings import Settings

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"


def test_the_env_template_names_only_real_settings() -> None:
    """Every B24_ variable in the template is a setting, and the template loads."""
    known = {f"B24_{name.upper()}" for name in Settings.model_fields}
    names = re.findall(r"^(B24_[A-Z_]+)=", (DEPLOY / "b24-connector.env").read_text(), re.M)
    assert names and set(names) <= known, set(names) - known


def test_the_unit_runs_the_worker_and_does_not_restart_on_a_config_error() -> None:
    unit = (DEPLOY / "b24-connector.service").read_text()
    assert re.search(r"^ExecStart=\S+/b24-connector run\b", unit, re.M)
    assert "RestartPreventExitStatus=2" in unit and "Restart=on-failure" in unit
    assert "EnvironmentFile=/etc/b24-connector.env" in unit


def test_the_dockerfile_copies_what_the_package_needs() -> None:
    """Each COPY source exists in the repository (what pyproject's packages are made of)."""
    root = DEPLOY.parent
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    for line in re.findall(r"^COPY (.+)$", dockerfile, re.M):
        *sources, _target = line.split()
        for source in sources:
            assert (root / source).exists(), source
    assert 'ENTRYPOINT ["b24-connector"]' in dockerfile and "/healthz" in dockerfile
