"""Transparency log: witness cosignatures (c2sp.org/tlog-cosignature) per checkpoint size.

Revision ID: 0012_log_cosignatures
Revises: 0009_blob_holders
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012_log_cosignatures"
down_revision = "0009_blob_holders"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "log_cosignatures",
        sa.Column("size", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("witness", sa.String(255), primary_key=True),
        sa.Column("line", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("log_cosignatures")
