"""Token lineage: the API token, OAuth client and access-token jti that minted a token, and
the API token that registered an OAuth client.

Revision ID: 0011_token_parents
Revises: 0009_blob_holders
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011_token_parents"
down_revision = "0009_blob_holders"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("api_tokens", sa.Column("parent_token_id", sa.Integer(), nullable=True))
    op.add_column("api_tokens", sa.Column("parent_client_id", sa.String(64), nullable=True))
    op.add_column("api_tokens", sa.Column("parent_jti", sa.String(64), nullable=True))
    op.create_index("ix_api_tokens_parent_token_id", "api_tokens", ["parent_token_id"])
    op.create_index("ix_api_tokens_parent_client_id", "api_tokens", ["parent_client_id"])
    op.create_index("ix_api_tokens_parent_jti", "api_tokens", ["parent_jti"])
    op.add_column("oauth_clients", sa.Column("parent_token_id", sa.Integer(), nullable=True))
    op.create_index("ix_oauth_clients_parent_token_id", "oauth_clients", ["parent_token_id"])


def downgrade() -> None:
    op.drop_index("ix_oauth_clients_parent_token_id", table_name="oauth_clients")
    op.drop_column("oauth_clients", "parent_token_id")
    op.drop_index("ix_api_tokens_parent_jti", table_name="api_tokens")
    op.drop_index("ix_api_tokens_parent_client_id", table_name="api_tokens")
    op.drop_index("ix_api_tokens_parent_token_id", table_name="api_tokens")
    op.drop_column("api_tokens", "parent_jti")
    op.drop_column("api_tokens", "parent_client_id")
    op.drop_column("api_tokens", "parent_token_id")
