"""erasure: anonymised bans, the pseudonym key, fingerprints of feedback texts, cleaned author ids

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07 09:30:00

Erasing an author now keeps their ban under a keyed hash of their id (`anonymised_bans`), with a key
generated here once and stored in `server_keys` (it does not change when the secret key rotates), and
deletes the labels integrations sent back about their texts, found by `feedback_labels.text_key`.

Author ids are cleaned as intake cleans them (`moderation.text.clean_text`) so that export, erasure and
bans reach every stored id: Coral's ids and ids of bans set through a URL were stored as sent. An id that
cleans to nothing is left as it was.
"""

import secrets

import sqlalchemy as sa
from alembic import op

import moderation.db
from moderation.text import clean_text, text_fingerprint

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

BATCH = 1000


def _backfill_fingerprints(conn: sa.Connection) -> None:
    feedback = sa.table('feedback_labels', sa.column('id', sa.Integer), sa.column('text', sa.Text),
                        sa.column('text_key', sa.String))
    last = 0
    while rows := conn.execute(sa.select(feedback.c.id, feedback.c.text).where(feedback.c.id > last)
                               .order_by(feedback.c.id).limit(BATCH)).all():
        conn.execute(feedback.update().where(feedback.c.id == sa.bindparam('row_id'))
                     .values(text_key=sa.bindparam('key')),
                     [{'row_id': row_id, 'key': text_fingerprint(text)} for row_id, text in rows])
        last = rows[-1][0]


def _clean_author_ids(conn: sa.Connection) -> None:
    comments = sa.table('comments', sa.column('author_id', sa.String))
    for (raw,) in conn.execute(sa.select(comments.c.author_id).distinct()).all():
        cleaned = clean_text(raw)
        if cleaned and cleaned != raw:
            conn.execute(comments.update().where(comments.c.author_id == raw).values(author_id=cleaned))
    bans = sa.table('author_bans', sa.column('author_id', sa.String))
    stored = {raw for (raw,) in conn.execute(sa.select(bans.c.author_id)).all()}
    for raw in sorted(stored):
        cleaned = clean_text(raw)
        if not cleaned or cleaned == raw:
            continue
        if cleaned in stored:  # the same author was banned under both spellings: keep the clean one
            conn.execute(bans.delete().where(bans.c.author_id == raw))
        else:
            conn.execute(bans.update().where(bans.c.author_id == raw).values(author_id=cleaned))
            stored.add(cleaned)


def upgrade() -> None:
    op.create_table('anonymised_bans',
    sa.Column('author_key', sa.String(length=64), nullable=False),
    sa.Column('until', moderation.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('created_at', moderation.db.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('author_key')
    )
    server_keys = op.create_table('server_keys',
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('value', sa.String(length=128), nullable=False),
    sa.Column('created_at', moderation.db.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('name')
    )
    op.bulk_insert(server_keys, [{'name': 'author_pseudonyms', 'value': secrets.token_hex(32),
                                  'created_at': moderation.db.utcnow()}])
    with op.batch_alter_table('feedback_labels', schema=None) as batch_op:
        batch_op.add_column(sa.Column('text_key', sa.String(length=64), nullable=True))
    conn = op.get_bind()
    _backfill_fingerprints(conn)
    with op.batch_alter_table('feedback_labels', schema=None) as batch_op:
        batch_op.alter_column('text_key', existing_type=sa.String(length=64), nullable=False)
        batch_op.create_index(batch_op.f('ix_feedback_labels_text_key'), ['text_key'], unique=False)
    _clean_author_ids(conn)


def downgrade() -> None:
    with op.batch_alter_table('feedback_labels', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_feedback_labels_text_key'))
        batch_op.drop_column('text_key')
    op.drop_table('server_keys')
    op.drop_table('anonymised_bans')
