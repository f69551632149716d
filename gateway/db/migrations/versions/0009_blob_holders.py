"""Blob holders: which orgs proved possession of a stored blob by uploading its bytes.

Nothing is backfilled: before this revision any org could count another org's blob as its
own (issue #14.1), so no existing row proves possession. A release still pending at upgrade
asks its org for the bytes once more; published releases are untouched.

Revision ID: 0009_blob_holders
Revises: 0008_generation
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009_blob_holders"
down_revision = "0008_generation"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "blob_holders",
        sa.Column("org_id", sa.Integer(), sa.ForeignKey("orgs.id"), primary_key=True),
        sa.Column("sha256", sa.String(64), sa.ForeignKey("blobs.sha256"), primary_key=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_blob_holders_sha256", "blob_holders", ["sha256"])


def downgrade() -> None:
    op.drop_table("blob_holders")
