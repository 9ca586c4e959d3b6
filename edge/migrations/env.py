"""Alembic environment: the connection is handed in by edge.db.migrate."""

from alembic import context

from edge.models import SQLModel

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=SQLModel.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
