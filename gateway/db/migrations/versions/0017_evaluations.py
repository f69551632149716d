"""Evaluation runs (pre-registered, sealed) and the signed attestations beside each release.

Revision ID: 0017_evaluations
Revises: 0016_call_text_digests
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017_evaluations"
down_revision = "0016_call_text_digests"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "evaluation_runs",
        sa.Column("run_id", sa.String(64), primary_key=True),
        sa.Column("release_id", sa.Integer(), sa.ForeignKey("releases.id"), nullable=False),
        sa.Column("tier", sa.String(32), nullable=False),
        sa.Column("model", sa.String(300), nullable=False),
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("users.id"), nullable=False),
        sa.Column("preregistration_index", sa.BigInteger(), nullable=False),
        sa.Column("seal_index", sa.BigInteger(), nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_evaluation_runs_release_id", "evaluation_runs", ["release_id"])
    op.create_index("ix_evaluation_runs_user_id", "evaluation_runs", ["user_id"])
    op.create_table(
        "evaluation_attestations",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("release_id", sa.Integer(), sa.ForeignKey("releases.id"), nullable=False),
        sa.Column("submitter_id", sa.Integer(), sa.ForeignKey("users.id"), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("envelope", sa.LargeBinary(), nullable=False),
        sa.Column("signer_key_id", sa.String(64), nullable=True),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("task", sa.String(160), nullable=False),
        sa.Column("tier", sa.String(32), nullable=False),
        sa.Column("score", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("log_index", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("digest", name="uq_evaluation_attestation_digest"),
    )
    op.create_index(
        "ix_evaluation_attestations_release_id", "evaluation_attestations", ["release_id"]
    )
    op.create_index(
        "ix_evaluation_attestations_submitter_id", "evaluation_attestations", ["submitter_id"]
    )


def downgrade() -> None:
    op.drop_index("ix_evaluation_attestations_submitter_id", table_name="evaluation_attestations")
    op.drop_index("ix_evaluation_attestations_release_id", table_name="evaluation_attestations")
    op.drop_table("evaluation_attestations")
    op.drop_index("ix_evaluation_runs_user_id", table_name="evaluation_runs")
    op.drop_index("ix_evaluation_runs_release_id", table_name="evaluation_runs")
    op.drop_table("evaluation_runs")
