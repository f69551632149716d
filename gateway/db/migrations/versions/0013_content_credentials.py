"""C2PA Content Credentials: the signed manifest store of each generated choice.

Revision ID: 0013_content_credentials
Revises: 0012_log_cosignatures
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013_content_credentials"
down_revision = "0012_log_cosignatures"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "content_credentials",
        sa.Column("manifest_id", sa.String(64), primary_key=True),
        sa.Column("call_id", sa.String(40), nullable=False),
        sa.Column("choice_index", sa.Integer(), nullable=False),
        sa.Column("key_id", sa.String(16), nullable=False),
        sa.Column("payload", sa.BigInteger(), nullable=False),
        sa.Column("log_index", sa.BigInteger(), nullable=False),
        sa.Column("text_sha256", sa.String(64), nullable=False),
        sa.Column("store", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("call_id", "choice_index", name="uq_content_credential_choice"),
    )
    op.create_index(
        "ix_content_credentials_key_payload", "content_credentials", ["key_id", "payload"]
    )


def downgrade() -> None:
    op.drop_index("ix_content_credentials_key_payload", table_name="content_credentials")
    op.drop_table("content_credentials")
