"""Flaw and bias reports about models, verified against the log.

Revision ID: 0015_flaw_reports
Revises: 0014_vllm_watermark_keys
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015_flaw_reports"
down_revision = "0014_vllm_watermark_keys"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "flaw_reports",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("repo_id", sa.String(161), nullable=False),
        sa.Column("version", sa.String(64), nullable=True),
        sa.Column("org_id", sa.Integer(), sa.ForeignKey("orgs.id"), nullable=False),
        sa.Column("reporter_id", sa.Integer(), sa.ForeignKey("users.id"), nullable=False),
        sa.Column("category", sa.String(32), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("quoted_output", sa.Text(), nullable=True),
        sa.Column("call_id", sa.String(40), nullable=True),
        sa.Column("verification", sa.Text(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("fixed_version", sa.String(64), nullable=True),
        sa.Column("rewarded", sa.Boolean(), nullable=False),
        sa.Column("log_index", sa.BigInteger(), nullable=True),
        sa.Column("disclose_after", sa.DateTime(timezone=True), nullable=False),
        sa.Column("disclosed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_flaw_reports_repo_id", "flaw_reports", ["repo_id"])
    op.create_index("ix_flaw_reports_org_id", "flaw_reports", ["org_id"])
    op.create_index("ix_flaw_reports_reporter_id", "flaw_reports", ["reporter_id"])


def downgrade() -> None:
    op.drop_index("ix_flaw_reports_reporter_id", table_name="flaw_reports")
    op.drop_index("ix_flaw_reports_org_id", table_name="flaw_reports")
    op.drop_index("ix_flaw_reports_repo_id", table_name="flaw_reports")
    op.drop_table("flaw_reports")
