"""Publisher policies (report disclosure window, auditor key), report links and comments,
and reasoning traces sealed to an auditor key.

Revision ID: 0018_publisher_policies
Revises: 0017_evaluations
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0018_publisher_policies"
down_revision = "0017_evaluations"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "publisher_policies",
        sa.Column("org_id", sa.Integer(), sa.ForeignKey("orgs.id"), primary_key=True),
        sa.Column("report_disclosure_days", sa.Integer(), nullable=False),
        sa.Column("auditor_key", sa.String(64), nullable=True),
        sa.Column("auditor_key_id", sa.String(16), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "report_links",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("report_id", sa.Integer(), sa.ForeignKey("flaw_reports.id"), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("log_index", sa.BigInteger(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("report_id", "kind", "version", name="uq_report_link"),
    )
    op.create_index("ix_report_links_report_id", "report_links", ["report_id"])
    op.create_table(
        "report_comments",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("report_id", sa.Integer(), sa.ForeignKey("flaw_reports.id"), nullable=False),
        sa.Column("author_id", sa.Integer(), sa.ForeignKey("users.id"), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("log_index", sa.BigInteger(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_report_comments_report_id", "report_comments", ["report_id"])
    op.create_table(
        "sealed_reasoning",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("call_id", sa.String(40), nullable=False),
        sa.Column("choice_index", sa.Integer(), nullable=False),
        sa.Column("org_id", sa.Integer(), sa.ForeignKey("orgs.id"), nullable=False),
        sa.Column("log_index", sa.BigInteger(), nullable=False),
        sa.Column("key_id", sa.String(16), nullable=False),
        sa.Column("sealed", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("call_id", "choice_index", name="uq_sealed_choice"),
    )
    op.create_index("ix_sealed_reasoning_call_id", "sealed_reasoning", ["call_id"])
    op.create_index("ix_sealed_reasoning_org_id", "sealed_reasoning", ["org_id"])
    op.create_index("ix_sealed_reasoning_log_index", "sealed_reasoning", ["log_index"])


def downgrade() -> None:
    for table, columns in (
        ("sealed_reasoning", ("log_index", "org_id", "call_id")),
        ("report_comments", ("report_id",)),
        ("report_links", ("report_id",)),
    ):
        for column in columns:
            op.drop_index(f"ix_{table}_{column}", table_name=table)
        op.drop_table(table)
    op.drop_table("publisher_policies")
