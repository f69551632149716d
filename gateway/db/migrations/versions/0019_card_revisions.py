"""Signed card revisions: a release's card re-rendered with endorsed evaluation results.

Revision ID: 0019_card_revisions
Revises: 0018_publisher_policies
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0019_card_revisions"
down_revision = "0018_publisher_policies"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "card_revisions",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("release_id", sa.Integer(), sa.ForeignKey("releases.id"), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("envelope", sa.Text(), nullable=False),
        sa.Column("card", sa.Text(), nullable=False),
        sa.Column("card_sha256", sa.String(64), nullable=False),
        sa.Column("bundles", sa.Text(), nullable=False),
        sa.Column("signer_key_id", sa.String(64), nullable=False),
        sa.Column("created_by", sa.Integer(), sa.ForeignKey("users.id"), nullable=False),
        sa.Column("log_index", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("release_id", "revision", name="uq_card_revision"),
    )
    op.create_index("ix_card_revisions_release_id", "card_revisions", ["release_id"])


def downgrade() -> None:
    op.drop_index("ix_card_revisions_release_id", table_name="card_revisions")
    op.drop_table("card_revisions")
