"""Releases: public keys, blobs, releases with their tiers and files.

Revision ID: 0002_releases
Revises: 0001_accounts
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_releases"
down_revision = "0001_accounts"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "public_keys",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("users.id"), nullable=False),
        sa.Column("org_id", sa.Integer(), sa.ForeignKey("orgs.id"), nullable=True),
        sa.Column("key_id", sa.String(64), nullable=False),
        sa.Column("key_type", sa.String(16), nullable=False),
        sa.Column("pem", sa.Text(), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_public_keys_user_id", "public_keys", ["user_id"])
    op.create_index("ix_public_keys_org_id", "public_keys", ["org_id"])
    op.create_index("ix_public_keys_key_id", "public_keys", ["key_id"], unique=True)
    op.create_table(
        "blobs",
        sa.Column("sha256", sa.String(64), primary_key=True),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "releases",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("org_id", sa.Integer(), sa.ForeignKey("orgs.id"), nullable=False),
        sa.Column("name", sa.String(96), nullable=False),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("repo_id", sa.String(161), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("statement_envelope", sa.Text(), nullable=False),
        sa.Column("statement_digest", sa.String(64), nullable=False),
        sa.Column("signer_key_id", sa.String(64), nullable=False),
        sa.Column("license", sa.String(64), nullable=True),
        sa.Column("terms_text", sa.Text(), nullable=True),
        sa.Column("terms_digest", sa.String(64), nullable=True),
        sa.Column("model_card", sa.Text(), nullable=False),
        sa.Column("policy_json", sa.Text(), nullable=False),
        sa.Column("yank_reason", sa.Text(), nullable=True),
        sa.Column("yanked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_by", sa.Integer(), sa.ForeignKey("users.id"), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
        sa.UniqueConstraint("org_id", "name", "version", name="uq_release_version"),
    )
    op.create_index("ix_releases_org_id", "releases", ["org_id"])
    op.create_index("ix_releases_repo_id", "releases", ["repo_id"])
    op.create_index("ix_releases_status", "releases", ["status"])
    op.create_index("ix_releases_statement_digest", "releases", ["statement_digest"])
    op.create_table(
        "release_tiers",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("release_id", sa.Integer(), sa.ForeignKey("releases.id"), nullable=False),
        sa.Column("tier", sa.String(32), nullable=False),
        sa.Column("gated", sa.Boolean(), nullable=False),
        sa.Column("bundle", sa.Text(), nullable=False),
        sa.Column("manifest_digest", sa.String(64), nullable=False),
        sa.UniqueConstraint("release_id", "tier", name="uq_release_tier"),
    )
    op.create_index("ix_release_tiers_release_id", "release_tiers", ["release_id"])
    op.create_table(
        "release_files",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("release_id", sa.Integer(), sa.ForeignKey("releases.id"), nullable=False),
        sa.Column("tier", sa.String(32), nullable=False),
        sa.Column("path", sa.String(1024), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.UniqueConstraint("release_id", "tier", "path", name="uq_release_file"),
    )
    op.create_index("ix_release_files_release_id", "release_files", ["release_id"])
    op.create_index("ix_release_files_sha256", "release_files", ["sha256"])


def downgrade() -> None:
    for table in ("release_files", "release_tiers", "releases", "blobs", "public_keys"):
        op.drop_table(table)
