"""Each logged choice's output digest on generation_calls (indexed), backfilled from the log.

Revision ID: 0016_call_text_digests
Revises: 0015_flaw_reports
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

revision = "0016_call_text_digests"
down_revision = "0015_flaw_reports"
branch_labels = None
depends_on = None

_BATCH = 1000


def upgrade() -> None:
    op.add_column("generation_calls", sa.Column("text_sha256", sa.String(71), nullable=True))
    # Backfill from the entries themselves (outputs[i].sha256 of each generation.completed),
    # before the index exists, a page of entries at a time (a long log is never held whole).
    connection = op.get_bind()
    page = sa.text(
        "SELECT idx, entry FROM log_entries WHERE action = 'generation.completed' "
        "AND idx > :after ORDER BY idx LIMIT :limit"
    )
    update = sa.text(
        "UPDATE generation_calls SET text_sha256 = :digest "
        "WHERE log_index = :log_index AND choice_index = :choice_index"
    )
    after = -1
    while rows := connection.execute(page, {"after": after, "limit": _BATCH}).all():
        updates = []
        for idx, entry in rows:
            outputs = json.loads(entry).get("fields", {}).get("outputs", [])
            for position, output in enumerate(outputs):
                digest = output.get("sha256")
                if isinstance(digest, str):
                    choice = output.get("index", position)
                    updates.append({"digest": digest, "log_index": idx, "choice_index": choice})
        if updates:
            connection.execute(update, updates)
        after = rows[-1][0]
    op.create_index("ix_generation_calls_text_sha256", "generation_calls", ["text_sha256"])


def downgrade() -> None:
    op.drop_index("ix_generation_calls_text_sha256", table_name="generation_calls")
    with op.batch_alter_table("generation_calls") as batch:
        batch.drop_column("text_sha256")
