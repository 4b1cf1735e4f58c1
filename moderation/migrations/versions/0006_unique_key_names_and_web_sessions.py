"""api_keys: unique names; web_sessions: moderators' sign-ins kept on the server

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07 10:00:00

Decisions, claims and audit rows record the moderator by key name, so two keys with one name could not
be told apart. Existing duplicates keep the name on the oldest key; each later one gets `-<id>` appended
(shortened to fit 100 characters, and again if that name is taken). Their old audit rows stay as they
were: which of the duplicates acted there cannot be known any more.

The page session cookie held the key id, trusted on its signature alone. It now holds a random token
whose SHA-256 is a row here, so logout, the session's lifetime and a revoked key end it on the server.
"""

import sqlalchemy as sa
from alembic import op

import moderation.db

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None

NAME_LENGTH = 100


def _rename_duplicate_key_names() -> None:
    bind = op.get_bind()
    keys = sa.table('api_keys', sa.column('id', sa.Integer), sa.column('name', sa.String))
    rows = bind.execute(sa.select(keys.c.id, keys.c.name).order_by(keys.c.id)).all()
    taken = {name for _, name in rows}
    kept: set[str] = set()
    for key_id, name in rows:
        if name not in kept:
            kept.add(name)
            continue
        suffix, candidate = f"-{key_id}", name
        while candidate in taken:
            candidate = candidate[:NAME_LENGTH - len(suffix)] + suffix
        taken.add(candidate)
        bind.execute(keys.update().where(keys.c.id == key_id).values(name=candidate))


def upgrade() -> None:
    _rename_duplicate_key_names()
    # Before web_sessions exists: on SQLite the batch copies api_keys, which a foreign key would pin.
    with op.batch_alter_table('api_keys', schema=None) as batch_op:
        batch_op.create_unique_constraint('uq_api_keys_name', ['name'])

    op.create_table('web_sessions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('key_id', sa.Integer(), nullable=False),
    sa.Column('created_at', moderation.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('last_seen_at', moderation.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['key_id'], ['api_keys.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('token_hash', name='uq_web_sessions_token_hash')
    )
    with op.batch_alter_table('web_sessions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_web_sessions_key_id'), ['key_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('web_sessions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_web_sessions_key_id'))
    op.drop_table('web_sessions')
    # The renamed duplicates keep their new names: which name was whose is in no other row.
    with op.batch_alter_table('api_keys', schema=None) as batch_op:
        batch_op.drop_constraint('uq_api_keys_name', type_='unique')
