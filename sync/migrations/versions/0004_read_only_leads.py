"""Read-only leads: ``lead.read_only`` marks a person the source refuses writes to (a converted Salesforce
Lead); leadrelay keeps scoring and storing it but plans no write to it and routes nothing to it.

Leads stored before this revision are all writable until the source sends them again, and an incremental
pull would not send an old converted Lead again: the ``leads`` cursor of each pipeline reading Salesforce
(its cursor is JSON naming the ``Lead`` object) is dropped, so the next cycle reads its leads once more.
Only the converted ones change content (the flag is hashed only when set): they alone are rescored, and
none of them is written to again.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def _salesforce_lead_cursor(value: str) -> bool:
    try:
        data = json.loads(value)
    except ValueError:
        return False
    return isinstance(data, dict) and "Lead" in data


def upgrade() -> None:
    bind = op.get_bind()
    # A store made by create_all between releases may have the column already: only when it is missing.
    if 'read_only' not in {c['name'] for c in sa.inspect(bind).get_columns('lead')}:
        with op.batch_alter_table('lead', schema=None) as batch_op:
            batch_op.add_column(sa.Column('read_only', sa.Boolean(), nullable=False, server_default=sa.false()))
        cursor = sa.table('cursor', sa.column('pipeline', sa.String()), sa.column('stream', sa.String()),
                          sa.column('value', sa.String()))
        rows = bind.execute(sa.select(cursor.c.pipeline, cursor.c.value).where(cursor.c.stream == 'leads'))
        stale = [pipeline for pipeline, value in rows if _salesforce_lead_cursor(value)]
        if stale:
            bind.execute(sa.delete(cursor).where(cursor.c.stream == 'leads', cursor.c.pipeline.in_(stale)))


def downgrade() -> None:
    with op.batch_alter_table('lead', schema=None) as batch_op:
        batch_op.drop_column('read_only')
