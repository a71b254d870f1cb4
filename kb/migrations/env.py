"""Alembic's environment for kb: always run from kb.db.upgrade_schema on a connection it opened (no alembic.ini)."""
from __future__ import annotations

from alembic import context

from kb.models import Base

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=True,  # SQLite cannot alter a table in place: changes rebuild it
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
