"""Opportunities and account challengers: the ``opportunity`` table (HubSpot deals, Salesforce
Opportunities, the account model's label) and ``account_shadow_score`` (a challenger account model scored
in shadow beside the champion, as ``shadow_score`` is for leads).

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A store made by create_all between releases may have the tables already: only when missing.
    tables = set(sa.inspect(op.get_bind()).get_table_names())
    if 'opportunity' not in tables:
        op.create_table('opportunity',
        sa.Column('source', sa.String(), nullable=False),
        sa.Column('key', sa.String(), nullable=False),
        sa.Column('account_key', sa.String(), nullable=True),
        sa.Column('lead_key', sa.String(), nullable=True),
        sa.Column('name', sa.String(), nullable=True),
        sa.Column('stage', sa.String(), nullable=True),
        sa.Column('amount', sa.Float(), nullable=True),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('closed_at', sa.DateTime(), nullable=True),
        sa.Column('is_won', sa.Boolean(), nullable=True),
        sa.Column('updated_at', sa.DateTime(), nullable=False),
        sa.Column('attributes', sa.JSON(), nullable=False),
        sa.Column('content_hash', sa.String(), nullable=False),
        sa.PrimaryKeyConstraint('source', 'key')
        )
        op.create_index('ix_opportunity_account', 'opportunity', ['source', 'account_key', 'created_at'],
                        unique=False)
    if 'account_shadow_score' not in tables:
        op.create_table('account_shadow_score',
        sa.Column('source', sa.String(), nullable=False),
        sa.Column('account_key', sa.String(), nullable=False),
        sa.Column('model_version', sa.String(), nullable=False),
        sa.Column('probability', sa.Float(), nullable=False),
        sa.Column('score', sa.Integer(), nullable=False),
        sa.Column('band', sa.String(), nullable=False),
        sa.Column('scored_at', sa.DateTime(), nullable=False),
        sa.Column('first_scored_at', sa.DateTime(), nullable=False),
        sa.Column('first_probability', sa.Float(), nullable=False),
        sa.Column('first_champion_probability', sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint('source', 'account_key', 'model_version')
        )


def downgrade() -> None:
    op.drop_table('account_shadow_score')
    op.drop_index('ix_opportunity_account', table_name='opportunity')
    op.drop_table('opportunity')
