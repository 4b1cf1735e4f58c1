"""articles: optional title and link; moderation_actions: the decision an undo reverses

Revision ID: 0010
Revises: 0008
Create Date: 2026-12-07 10:30:00

The site's backend may send `article_title` and `article_url` with a submission or in the article
settings; the moderators' queue shows the title as a link instead of the bare id. Both stay empty for
every existing article until the backend sends them.

An undo (a reversal) is an audit row of its own that names the decision it takes back, so the trail
keeps both and the "Entschieden" page can tell a reversed decision from a standing one.
"""

import sqlalchemy as sa
from alembic import op

revision = '0010'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('articles', schema=None) as batch_op:
        batch_op.add_column(sa.Column('title', sa.String(length=300), nullable=True))
        batch_op.add_column(sa.Column('url', sa.String(length=2000), nullable=True))
    with op.batch_alter_table('moderation_actions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('reverses_action_id', sa.Integer(), nullable=True))
        batch_op.create_foreign_key('fk_moderation_actions_reverses_action_id', 'moderation_actions',
                                    ['reverses_action_id'], ['id'])


def downgrade() -> None:
    with op.batch_alter_table('moderation_actions', schema=None) as batch_op:
        batch_op.drop_constraint('fk_moderation_actions_reverses_action_id', type_='foreignkey')
        batch_op.drop_column('reverses_action_id')
    with op.batch_alter_table('articles', schema=None) as batch_op:
        batch_op.drop_column('url')
        batch_op.drop_column('title')
