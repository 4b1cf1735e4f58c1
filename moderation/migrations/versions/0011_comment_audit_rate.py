"""the audit rate in force when a comment arrived: the propensity of its decision, for retraining's weights

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07 12:00:00

A comment the model would publish or reject on its own reaches a moderator only when it is drawn into
the audit sample, with the probability `comments.audit_rate` recorded at intake; a comment the model
holds reaches one with probability 1. Retraining weights each decision by the inverse of that
probability, so the site's decisions stand for all its comments (its removal rate, the calibration of
the routing thresholds). The rate changes with the policy; it cannot be recovered later, so it is
stored per comment. NULL for comments stored before this migration.
"""

import sqlalchemy as sa
from alembic import op

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('comments', schema=None) as batch_op:
        batch_op.add_column(sa.Column('audit_rate', sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('comments', schema=None) as batch_op:
        batch_op.drop_column('audit_rate')
