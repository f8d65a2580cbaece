"""Security: case-insensitive unique user names; a per-database secret for opaque response ids.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30

`server_settings` holds one random secret, made here, so every server process (and every
restart) derives the same opaque per-task response ids from it (`prefloop.feedback.app.TaskIds`).
"""

from __future__ import annotations

import secrets

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    settings = op.create_table(
        "server_settings",
        sa.Column("key", sa.String(100), primary_key=True),
        sa.Column("value", sa.Text(), nullable=False),
    )
    op.bulk_insert(settings, [{"key": "response_id_key", "value": secrets.token_hex(32)}])
    # Fails on a database that already holds two names differing only in case: rename one first.
    op.create_index("uq_users_name_lower", "users", [sa.text("lower(name)")], unique=True)


def downgrade() -> None:
    op.drop_index("uq_users_name_lower", table_name="users")
    op.drop_table("server_settings")
