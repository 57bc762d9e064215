"""Several agents, alerts and shadow scoring: pipeline leases and agents (`leadrelay run`), the
agent that ran each run, alert state, the source fields last seen (schema drift), and challengers' shadow
scores.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A store made by create_all between releases may hold some of these already: only what is missing.
    existing = set(sa.inspect(op.get_bind()).get_table_names())
    if 'lease' not in existing:
        op.create_table('lease',
        sa.Column('pipeline', sa.String(), nullable=False),
        sa.Column('holder', sa.String(), nullable=True),
        sa.Column('expires_at', sa.DateTime(), nullable=False),
        sa.Column('token', sa.Integer(), nullable=False),
        sa.Column('acquired_at', sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint('pipeline')
        )

    if 'lease_agent' not in existing:
        op.create_table('lease_agent',
        sa.Column('agent', sa.String(), nullable=False),
        sa.Column('seen_at', sa.DateTime(), nullable=False),
        sa.Column('started_at', sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint('agent')
        )

    if 'alert_state' not in existing:
        op.create_table('alert_state',
        sa.Column('pipeline', sa.String(), nullable=False),
        sa.Column('condition', sa.String(), nullable=False),
        sa.Column('active', sa.Boolean(), nullable=False),
        sa.Column('since', sa.DateTime(), nullable=False),
        sa.Column('message', sa.String(), nullable=False),
        sa.Column('updated_at', sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint('pipeline', 'condition')
        )

    if 'source_fields' not in existing:
        op.create_table('source_fields',
        sa.Column('pipeline', sa.String(), nullable=False),
        sa.Column('stream', sa.String(), nullable=False),
        sa.Column('fields', sa.JSON(), nullable=False),
        sa.Column('updated_at', sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint('pipeline', 'stream')
        )

    if 'shadow_score' not in existing:
        op.create_table('shadow_score',
        sa.Column('source', sa.String(), nullable=False),
        sa.Column('lead_key', sa.String(), nullable=False),
        sa.Column('model_version', sa.String(), nullable=False),
        sa.Column('probability', sa.Float(), nullable=False),
        sa.Column('score', sa.Integer(), nullable=False),
        sa.Column('band', sa.String(), nullable=False),
        sa.Column('scored_at', sa.DateTime(), nullable=False),
        sa.Column('first_scored_at', sa.DateTime(), nullable=False),
        sa.Column('first_probability', sa.Float(), nullable=False),
        sa.Column('first_champion_probability', sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint('source', 'lead_key', 'model_version')
        )

    if 'agent' not in {c['name'] for c in sa.inspect(op.get_bind()).get_columns('run')}:
        with op.batch_alter_table('run', schema=None) as batch_op:
            batch_op.add_column(sa.Column('agent', sa.String(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('run', schema=None) as batch_op:
        batch_op.drop_column('agent')
    op.drop_table('shadow_score')
    op.drop_table('source_fields')
    op.drop_table('alert_state')
    op.drop_table('lease_agent')
    op.drop_table('lease')
