"""Schema migrations (Alembic), run from kb.db; no alembic.ini is needed."""
