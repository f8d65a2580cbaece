"""Media: images and video clips of a campaign, shown as responses (the control loop's clip pairs).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "media",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "campaign_id", sa.Integer(), sa.ForeignKey("campaigns.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("content_type", sa.String(50), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.UniqueConstraint("campaign_id", "sha256", name="uq_media_campaign_sha256"),
    )
    op.create_index("ix_media_campaign_id", "media", ["campaign_id"])
    with op.batch_alter_table("responses") as batch:
        batch.add_column(sa.Column("media_id", sa.Integer(), nullable=True))
        batch.create_foreign_key(
            "fk_responses_media_id_media", "media", ["media_id"], ["id"], ondelete="CASCADE"
        )
        batch.create_index("ix_responses_media_id", ["media_id"])


def downgrade() -> None:
    with op.batch_alter_table("responses") as batch:
        batch.drop_index("ix_responses_media_id")
        batch.drop_constraint("fk_responses_media_id_media", type_="foreignkey")
        batch.drop_column("media_id")
    op.drop_index("ix_media_campaign_id", table_name="media")
    op.drop_table("media")
