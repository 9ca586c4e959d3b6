"""Alembic environment for the office database: the connection is handed in."""

from alembic import context

from sync.schema import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata)
with context.begin_transaction():
    context.run_migrations()
