"""comments: indexes for the duplicate check at intake and for one article's queue

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24 22:55:00

The duplicate check looks for the same author's recent comment under the same article. With only
`ix_comments_author_id`, SQLite's planner (no statistics) chose `ix_comments_article_status_id` and read
every comment of the article: 0.4 ms per submission at 5,000 comments, growing with the article.
Likewise one article's moderation queue walked every pending comment through `ix_comments_queue`
(56 ms at 200,000 comments); `ix_comments_article_queue` leads with the article. Author histories
(counts by status) read `ix_comments_author_status` alone instead of every row of the author.
"""

from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('comments', schema=None) as batch_op:
        batch_op.create_index('ix_comments_author_article_created', ['author_id', 'article_id', 'created_at'],
                              unique=False)
        batch_op.drop_index('ix_comments_author_id')
        batch_op.create_index('ix_comments_article_queue', ['article_id', 'status', 'reported', 'toxicity'],
                              unique=False)
        batch_op.create_index('ix_comments_author_status', ['author_id', 'status'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('comments', schema=None) as batch_op:
        batch_op.create_index('ix_comments_author_id', ['author_id'], unique=False)
        batch_op.drop_index('ix_comments_author_article_created')
        batch_op.drop_index('ix_comments_article_queue')
        batch_op.drop_index('ix_comments_author_status')
