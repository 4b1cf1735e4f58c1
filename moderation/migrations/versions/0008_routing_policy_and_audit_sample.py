"""routing policy settings with their audit trail; the model's own route and the audit sample on comments

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07 09:00:00

`settings` holds the routing policy the site sets in the dashboard or through the API (every worker
re-reads it within seconds); `setting_changes` records who changed it, when, from what to what.
`comments.auto_route` keeps what the model decided on its own at intake, `comments.audited` whether
that decision was drawn into the random audit sample and held for a person instead: the moderators'
decisions on that sample measure the leak of automatic publishing.
"""

import sqlalchemy as sa
from alembic import op

import moderation.db

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('settings',
    sa.Column('key', sa.String(length=64), nullable=False),
    sa.Column('value', sa.JSON(), nullable=False),
    sa.Column('updated_by', sa.String(length=200), nullable=False),
    sa.Column('updated_at', moderation.db.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('key')
    )
    op.create_table('setting_changes',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('key', sa.String(length=64), nullable=False),
    sa.Column('old_value', sa.JSON(), nullable=True),
    sa.Column('new_value', sa.JSON(), nullable=False),
    sa.Column('changed_by', sa.String(length=200), nullable=False),
    sa.Column('created_at', moderation.db.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('setting_changes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_setting_changes_key'), ['key'], unique=False)
    with op.batch_alter_table('comments', schema=None) as batch_op:
        batch_op.add_column(sa.Column('auto_route', sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column('audited', sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.create_index('ix_comments_audited', ['audited', 'model_version'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('comments', schema=None) as batch_op:
        batch_op.drop_index('ix_comments_audited')
        batch_op.drop_column('audited')
        batch_op.drop_column('auto_route')
    with op.batch_alter_table('setting_changes', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_setting_changes_key'))
    op.drop_table('setting_changes')
    op.drop_table('settings')
