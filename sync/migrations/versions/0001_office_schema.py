"""office schema

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "anomalies",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
        sa.Column("node_id", sa.Text(), nullable=True),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "change_log",
        sa.Column("change_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("entity", sa.Text(), nullable=False),
        sa.Column("entity_id", sa.Text(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("op", sa.Text(), nullable=False),
        sa.Column("payload", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("committed_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("change_id"),
    )
    op.create_table(
        "edge_cursors",
        sa.Column("node_id", sa.Text(), nullable=False),
        sa.Column("epoch", sa.BigInteger(), nullable=False),
        sa.Column("base", sa.BigInteger(), nullable=False),
        sa.Column("contiguous_hwm", sa.BigInteger(), nullable=False),
        sa.Column("max_seen", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("node_id", "epoch"),
    )
    op.create_table(
        "edge_events",
        sa.Column("node_id", sa.Text(), nullable=False),
        sa.Column("epoch", sa.BigInteger(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("ref", sa.Text(), nullable=False),
        sa.Column("payload", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("sha256", sa.Text(), nullable=False),
        sa.Column("received_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("node_id", "epoch", "seq"),
    )
    op.create_index(op.f("ix_edge_events_kind"), "edge_events", ["kind"], unique=False)
    op.create_index(
        op.f("ix_edge_events_received_at"), "edge_events", ["received_at"], unique=False
    )
    op.create_table(
        "nodes",
        sa.Column("node_id", sa.Text(), nullable=False),
        sa.Column("token_hash", sa.Text(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("last_seen_at", sa.Float(), nullable=True),
        sa.Column("revoked_at", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("node_id"),
    )
    op.create_index(op.f("ix_nodes_token_hash"), "nodes", ["token_hash"], unique=False)
    op.create_table(
        "passes",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("card_key", sa.BigInteger(), nullable=False),
        sa.Column("card_hex", sa.Text(), nullable=True),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("unit", sa.Text(), nullable=True),
        sa.Column("id_hash", sa.Text(), nullable=True),
        sa.Column("id_last4", sa.Text(), nullable=True),
        sa.Column("valid_from", sa.Float(), nullable=False),
        sa.Column("valid_until", sa.Float(), nullable=True),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("status_reason", sa.Text(), nullable=True),
        sa.Column("gates", sa.Text(), nullable=True),
        sa.Column("daily_window", sa.Text(), nullable=True),
        sa.Column("permit_no", sa.Text(), nullable=True),
        sa.Column("deposit_fen", sa.Integer(), nullable=True),
        sa.Column("fee_fen", sa.Integer(), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("issued_by", sa.Text(), nullable=True),
        sa.Column("updated_by", sa.Text(), nullable=True),
        sa.Column("issued_at", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_passes_card_key"), "passes", ["card_key"], unique=False)
    op.create_table(
        "users",
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("role", sa.Text(), nullable=False),
        sa.Column("token_hash", sa.Text(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("revoked_at", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_index(op.f("ix_users_token_hash"), "users", ["token_hash"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_users_token_hash"), table_name="users")
    op.drop_table("users")
    op.drop_index(op.f("ix_passes_card_key"), table_name="passes")
    op.drop_table("passes")
    op.drop_index(op.f("ix_nodes_token_hash"), table_name="nodes")
    op.drop_table("nodes")
    op.drop_index(op.f("ix_edge_events_received_at"), table_name="edge_events")
    op.drop_index(op.f("ix_edge_events_kind"), table_name="edge_events")
    op.drop_table("edge_events")
    op.drop_table("edge_cursors")
    op.drop_table("change_log")
    op.drop_table("anomalies")
