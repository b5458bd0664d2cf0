"""The SQL store: SQLAlchemy 2.x tables, engine creation and Alembic migrations."""
