"""The composition root: settings in, ready-to-use adapters and services out.

Every CLI verb and the worker build what they need here, so construction happens in one
place and nothing is built at import time.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

from sqlalchemy import Engine

from connector.adapters.mapping_files import load_mappings
from connector.adapters.store.database import make_engine
from connector.core.mapping_model import MappingSet
from connector.errors import ConfigError
from connector.settings import Settings, load_settings

log = logging.getLogger(__name__)


def settings() -> Settings:
    """Read the settings (environment, then ``.env``); raises ConfigError on bad values."""
    return load_settings()


def store_engine(cfg: Settings) -> Engine:
    """The SQLAlchemy engine for ``B24_DATABASE_URL``."""
    return make_engine(cfg.database_url)


def shipped_mappings_dir() -> Path:
    spec = importlib.util.find_spec("connector.default_mappings")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            "the shipped mappings are missing from this install; set B24_MAPPINGS_DIR"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def mappings_dir(cfg: Settings) -> Path:
    """``B24_MAPPINGS_DIR``; when left at its default and absent here, the shipped mappings."""
    folder = cfg.mappings_dir
    if not folder.exists() and folder == Path("mappings"):
        shipped = shipped_mappings_dir()
        log.info("no ./mappings folder; using the shipped mappings in %s", shipped)
        return shipped
    return folder


def mappings(cfg: Settings) -> MappingSet:
    """Load and validate the mapping files (MappingError, exit 2, names file/key/line)."""
    return load_mappings(mappings_dir(cfg))
