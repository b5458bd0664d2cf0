"""How the CLI prints: plain lines for people, ``--json`` for scripts, errors on stderr."""

from __future__ import annotations

import json
import sys
from typing import Any

import click


def emit_json(value: Any) -> None:
    """Print ``value`` as JSON on stdout (one document, sorted keys, dates as strings)."""
    click.echo(json.dumps(value, indent=2, sort_keys=True, default=str))


def fail(message: str) -> None:
    """Print one error line on stderr (never a traceback)."""
    click.echo(f"error: {message}", err=True)
    sys.stderr.flush()
