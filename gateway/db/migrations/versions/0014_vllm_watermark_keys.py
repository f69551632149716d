"""vLLM watermark keys registered by publishers (sealed), for detecting vLLM's own watermark.

Revision ID: 0014_vllm_watermark_keys
Revises: 0013_content_credentials
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014_vllm_watermark_keys"
down_revision = "0013_content_credentials"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "vllm_watermark_keys",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("release_id", sa.Integer(), sa.ForeignKey("releases.id"), nullable=False),
        sa.Column("tier", sa.String(32), nullable=False),
        sa.Column("sealed", sa.Text(), nullable=False),
        sa.Column("context_width", sa.Integer(), nullable=False),
        sa.Column("deduplicate_contexts", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_vllm_watermark_keys_release_id", "vllm_watermark_keys", ["release_id"])


def downgrade() -> None:
    op.drop_index("ix_vllm_watermark_keys_release_id", table_name="vllm_watermark_keys")
    op.drop_table("vllm_watermark_keys")
