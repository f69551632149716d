"""Transparency log: state row, entries, perfect-subtree nodes, signed checkpoints.

Revision ID: 0003_ledger
Revises: 0002_releases
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_ledger"
down_revision = "0002_releases"
branch_labels = None
depends_on = None

EMPTY_ROOT = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def upgrade() -> None:
    state = op.create_table(
        "log_state",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("next_index", sa.BigInteger(), nullable=False),
        sa.Column("tree_size", sa.BigInteger(), nullable=False),
        sa.Column("root_hash", sa.String(64), nullable=False),
        sa.Column("right_edge", sa.Text(), nullable=False),
    )
    op.bulk_insert(
        state,
        [{"id": 1, "next_index": 0, "tree_size": 0, "root_hash": EMPTY_ROOT, "right_edge": "[]"}],
    )
    op.create_table(
        "log_entries",
        sa.Column("idx", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("entry", sa.Text(), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("actor_user_id", sa.Integer(), nullable=True),
        sa.Column("org_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_log_entries_action", "log_entries", ["action"])
    op.create_index("ix_log_entries_actor_user_id", "log_entries", ["actor_user_id"])
    op.create_index("ix_log_entries_org_id", "log_entries", ["org_id"])
    op.create_table(
        "log_nodes",
        sa.Column("level", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("index", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("hash", sa.String(64), nullable=False),
    )
    op.create_table(
        "log_checkpoints",
        sa.Column("size", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("root_hash", sa.String(64), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    for table in ("log_checkpoints", "log_nodes", "log_entries", "log_state"):
        op.drop_table(table)
