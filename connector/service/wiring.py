"""The composition root: settings in, ready-to-use adapters and services out.

Every CLI verb and the worker build what they need here, so construction happens in one
place and nothing is built at import time.
"""

from __future__ import annotations

from sqlalchemy import Engine

from connector.adapters.store.database import make_engine
from connector.settings import Settings, load_settings


def settings() -> Settings:
    """Read the settings (environment, then ``.env``); raises ConfigError on bad values."""
    return load_settings()


def store_engine(cfg: Settings) -> Engine:
    """The SQLAlchemy engine for ``B24_DATABASE_URL``."""
    return make_engine(cfg.database_url)
