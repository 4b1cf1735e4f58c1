"""comments.threat_likely: likely threats first in the moderation queue, from the queue's indexes

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07 14:00:00

A model with a threat head holds a likely threat for a person with reason `threat_likely`, whatever its
toxicity, and the queue shows such comments before all others. The flag is a column, not a lookup in the
JSON `reasons`, so that `ix_comments_queue` and `ix_comments_article_queue` can carry it before the
toxicity and the queue's page stays a walk along an index. False for comments stored before this
migration (no model had a threat head).
"""

import sqlalchemy as sa
from alembic import op

revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('comments', schema=None) as batch_op:
        batch_op.add_column(sa.Column('threat_likely', sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.drop_index('ix_comments_queue')
        batch_op.drop_index('ix_comments_article_queue')
        batch_op.create_index('ix_comments_queue', ['status', 'reported', 'threat_likely', 'toxicity'], unique=False)
        batch_op.create_index('ix_comments_article_queue', ['article_id', 'status', 'reported', 'threat_likely',
                                                            'toxicity'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('comments', schema=None) as batch_op:
        batch_op.drop_index('ix_comments_queue')
        batch_op.drop_index('ix_comments_article_queue')
        batch_op.create_index('ix_comments_queue', ['status', 'reported', 'toxicity'], unique=False)
        batch_op.create_index('ix_comments_article_queue', ['article_id', 'status', 'reported', 'toxicity'],
                              unique=False)
        batch_op.drop_column('threat_likely')
