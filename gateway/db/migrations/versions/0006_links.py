"""Download links: issued link ids with their byte budgets.

Revision ID: 0006_links
Revises: 0004_access
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_links"
down_revision = "0004_access"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "download_links",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("release_id", sa.Integer(), sa.ForeignKey("releases.id"), nullable=False),
        sa.Column("tier", sa.String(32), nullable=False),
        sa.Column("path", sa.String(1024), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("users.id"), nullable=True),
        sa.Column("grant_id", sa.Integer(), sa.ForeignKey("grants.id"), nullable=True),
        sa.Column("key_id", sa.String(32), nullable=False),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("byte_budget", sa.BigInteger(), nullable=False),
        sa.Column("bytes_served", sa.BigInteger(), nullable=False),
    )
    op.create_index("ix_download_links_release_id", "download_links", ["release_id"])
    op.create_index("ix_download_links_user_id", "download_links", ["user_id"])
    op.create_index("ix_download_links_grant_id", "download_links", ["grant_id"])


def downgrade() -> None:
    op.drop_table("download_links")
