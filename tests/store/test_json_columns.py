"""JSON columns through the engine's orjson codec, on every backend."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from connector.adapters.store.database import make_engine


@pytest.fixture
def engine(db_url: str) -> Iterator[sa.Engine]:
    engine = make_engine(db_url)
    yield engine
    engine.dispose()


def test_the_engine_writes_json_columns_through_orjson(engine: sa.Engine) -> None:
    """A JSON column (as ``sync_link.base`` is) stores orjson's compact text with
    non-ASCII kept, and reads back the same value, big integers included."""
    metadata = sa.MetaData()
    table = sa.Table(
        "json_probe",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("v", sa.JSON),
    )
    metadata.create_all(engine)
    value = {"TITLE": "Рога и копыта", "PHONE": [["WORK", "+7 1"]], "1": None}
    big = {"BIG": 2**70, "NEAR": -(2**63) - 1}  # json's path, both ways
    try:
        with engine.begin() as conn:
            conn.execute(table.insert(), [{"id": 1, "v": value}, {"id": 2, "v": big}])
            read = conn.execute(sa.select(table.c.v).order_by(table.c.id)).scalars().all()
            assert read == [value, big]
            if engine.dialect.name != "postgresql":  # JSON text kept as sent (not jsonb)
                raw = conn.execute(sa.text("SELECT v FROM json_probe WHERE id = 1")).scalar_one()
                assert '"TITLE":"Рога и копыта"' in raw
    finally:
        metadata.drop_all(engine)
