"""Generation: watermark keys in use (with their call-tag counters) and generated choices.

Revision ID: 0008_generation
Revises: 0007_web
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008_generation"
down_revision = "0007_web"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "watermark_keys",
        sa.Column("key_id", sa.String(16), primary_key=True),
        sa.Column("release_id", sa.Integer(), sa.ForeignKey("releases.id"), nullable=False),
        sa.Column("tier", sa.String(32), nullable=False),
        sa.Column("config_json", sa.Text(), nullable=False),
        sa.Column("next_tag", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_watermark_keys_release_id", "watermark_keys", ["release_id"])
    op.create_table(
        "generation_calls",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("call_id", sa.String(40), nullable=False),
        sa.Column("choice_index", sa.Integer(), nullable=False),
        sa.Column("key_id", sa.String(16), nullable=False),
        sa.Column("payload", sa.BigInteger(), nullable=False),
        sa.Column("log_index", sa.BigInteger(), nullable=False),
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("users.id"), nullable=False),
        sa.Column("release_id", sa.Integer(), sa.ForeignKey("releases.id"), nullable=False),
        sa.Column("tier", sa.String(32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("call_id", "choice_index", name="uq_generation_choice"),
    )
    op.create_index("ix_generation_calls_call_id", "generation_calls", ["call_id"])
    op.create_index("ix_generation_calls_log_index", "generation_calls", ["log_index"])
    op.create_index("ix_generation_calls_user_id", "generation_calls", ["user_id"])
    op.create_index("ix_generation_calls_release_id", "generation_calls", ["release_id"])
    op.create_index("ix_generation_calls_key_payload", "generation_calls", ["key_id", "payload"])


def downgrade() -> None:
    op.drop_table("generation_calls")
    op.drop_table("watermark_keys")
