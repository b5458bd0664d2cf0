"""The connector's own bookkeeping tables, all prefixed ``sync_``.

ERP tables (from ``mappings/*.yaml``) are not here; they have their own metadata.
Later features add revisions in ``migrations/versions``; a drift test keeps these
definitions and the migrations in agreement on every database.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Double,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING)

Id = BigInteger().with_variant(Integer(), "sqlite")
"""Auto-increment primary keys: BIGINT, but INTEGER on SQLite so ROWID aliasing works."""

sync_token = Table(
    "sync_token",
    metadata,
    Column("portal", String(255), primary_key=True, comment="portal host, the tenant key"),
    Column("member_id", String(64), nullable=True),
    Column("client_endpoint", String(512), nullable=True),
    Column("server_endpoint", String(512), nullable=True),
    Column("access_token", Text, nullable=True),
    Column("refresh_token", Text, nullable=False),
    Column("scope", String(1024), nullable=True),
    Column("application_token", Text, nullable=True),
    Column("issued_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=True),
    Column(
        "generation",
        Integer,
        nullable=False,
        server_default="0",
        comment="bumped on every rotation; lets a racing refresher see it lost",
    ),
    comment="OAuth tokens of the connector's app, one row per portal",
)

sync_rate_bucket = Table(
    "sync_rate_bucket",
    metadata,
    Column("portal", String(255), primary_key=True),
    Column("level", Double, nullable=False, server_default="0"),
    Column(
        "updated_at",
        Double,
        nullable=False,
        server_default="0",
        comment="unix seconds of the last leak computation",
    ),
    Column("slowdown_until", Double, nullable=False, server_default="0"),
    comment="the shared client-side leaky bucket when several workers share a database",
)

sync_journal = Table(
    "sync_journal",
    metadata,
    Column("process_id", String(64), primary_key=True),
    Column("connector_id", String(64), nullable=False),
    Column("state", String(16), nullable=False, comment="reserved | applied | cleared | failed"),
    Column("record_ids", JSON, nullable=False, comment="queue record ids held by this process"),
    Column("events", JSON, nullable=False, comment="the queue records as fetched"),
    Column(
        "flagged",
        JSON,
        nullable=True,
        comment="MESSAGE_IDs to flag with event.offline.error once applied",
    ),
    Column("worker", String(255), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Index("ix_sync_journal_state", "state"),
    comment="drain journal: every reserved process_id, written before acting on it",
)

sync_worker = Table(
    "sync_worker",
    metadata,
    Column("id", String(96), primary_key=True, comment="host-pid-random, stamped on journal rows"),
    Column("connector_id", String(64), nullable=False),
    Column("host", String(255), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("heartbeat_at", DateTime(timezone=True), nullable=False),
    Column(
        "lease_until",
        DateTime(timezone=True),
        nullable=False,
        comment="past this, the worker is dead: its reservations may be adopted",
    ),
    Column("listener", Boolean, nullable=False, server_default="0"),
    Index("ix_sync_worker_connector_id", "connector_id"),
    comment="running workers and their heartbeat leases",
)

sync_link = Table(
    "sync_link",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("entity", String(64), nullable=False),
    Column("b24_id", BigInteger, nullable=True),
    Column("erp_key", String(255), nullable=True),
    Column("base", JSON, nullable=True, comment="last agreed field values (the merge base)"),
    Column("deleted", Boolean, nullable=False, server_default="0"),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("entity", "b24_id", name="uq_sync_link_entity_b24_id"),
    UniqueConstraint("entity", "erp_key", name="uq_sync_link_entity_erp_key"),
    comment="one row per synced record: portal id, ERP key and the three-way merge base",
)

sync_outbox = Table(
    "sync_outbox",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("entity", String(64), nullable=False),
    Column("erp_key", String(255), nullable=False),
    Column("op", String(8), nullable=False, comment="insert | update | delete"),
    Column("changed", JSON, nullable=True, comment="column names the ERP changed"),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("last_error", Text, nullable=True),
    Column("locked_by", String(255), nullable=True),
    Column("locked_at", DateTime(timezone=True), nullable=True),
    Column("done_at", DateTime(timezone=True), nullable=True),
    Column(
        "status",
        String(16),
        nullable=False,
        server_default="pending",
        comment="pending | done | failed | held",
    ),
    Column("error_code", String(64), nullable=True, comment="the portal's code"),
    Column("note", Text, nullable=True, comment="what the pusher did, in words"),
    Column(
        "sent",
        JSON,
        nullable=True,
        comment="what the pusher is about to send (read after a crash mid-push)",
    ),
    Index("ix_sync_outbox_pending", "done_at", "id"),
    Index("ix_sync_outbox_status", "status", "id"),
    comment="ERP-side changes waiting to be pushed to the portal",
)

sync_echo = Table(
    "sync_echo",
    metadata,
    Column("marker", Integer, primary_key=True, autoincrement=False),
    comment=(
        "SQLite only: a row here, written and removed inside the connector's own "
        "transaction, tells the outbox triggers to stay quiet"
    ),
)

sync_conflict = Table(
    "sync_conflict",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("entity", String(64), nullable=False),
    Column("b24_id", BigInteger, nullable=True),
    Column("erp_key", String(255), nullable=True),
    Column(
        "fields",
        JSON,
        nullable=False,
        comment="{field: {base, portal, erp}} for every field changed on both sides",
    ),
    Column("message_id", String(64), nullable=True),
    Column(
        "status",
        String(16),
        nullable=False,
        server_default="open",
        comment="open | resolved | ignored",
    ),
    Column("resolution", JSON, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("resolved_at", DateTime(timezone=True), nullable=True),
    Column(
        "message_ids",
        JSON,
        nullable=True,
        comment="every queue MESSAGE_ID this conflict holds in the portal",
    ),
    Column("last_seen_at", DateTime(timezone=True), nullable=True),
    Column(
        "times",
        JSON,
        nullable=True,
        comment="each side's last modification: {portal, erp} (ISO 8601)",
    ),
    Column("resolved_by", String(255), nullable=True),
    Column(
        "released_at",
        DateTime(timezone=True),
        nullable=True,
        comment="when its held queue records were released after the resolution",
    ),
    Index("ix_sync_conflict_status", "status"),
    comment="same field changed on both sides; waits for an operator",
)

sync_record_error = Table(
    "sync_record_error",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("entity", String(64), nullable=False),
    Column("b24_id", BigInteger, nullable=True),
    Column("erp_key", String(255), nullable=True),
    Column("field", String(255), nullable=True),
    Column("message", Text, nullable=False),
    Column("message_id", String(64), nullable=True),
    Column("payload", JSON, nullable=True),
    Column("status", String(16), nullable=False, server_default="open"),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("last_seen_at", DateTime(timezone=True), nullable=True),
    Column("resolved_at", DateTime(timezone=True), nullable=True),
    Column(
        "released_at",
        DateTime(timezone=True),
        nullable=True,
        comment="when its held queue record was released after it synced",
    ),
    Index("ix_sync_record_error_status", "status"),
    comment="records that could not be synced (bad input), kept for the operator",
)

sync_cursor = Table(
    "sync_cursor",
    metadata,
    Column("name", String(128), primary_key=True, comment="e.g. backfill:crm.company"),
    Column("value", String(255), nullable=True),
    Column("finished", Boolean, nullable=False, server_default="0"),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    comment="resumable positions (backfill ID windows and the like)",
)

sync_state = Table(
    "sync_state",
    metadata,
    Column("key", String(128), primary_key=True),
    Column("value", JSON, nullable=True),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    comment="small facts the worker keeps (bindings made, features detected)",
)

__all__ = [
    "metadata",
    "sync_conflict",
    "sync_cursor",
    "sync_echo",
    "sync_journal",
    "sync_link",
    "sync_outbox",
    "sync_rate_bucket",
    "sync_record_error",
    "sync_state",
    "sync_token",
    "sync_worker",
]
