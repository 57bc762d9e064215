"""Account scores: the account model's latest score of each account (``[scoring.account]``), served beside
the lead model; it rides on the account's leads' score updates and is never written to the account object.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A store made by create_all between releases may have the table already: only when it is missing.
    if 'account_score' not in set(sa.inspect(op.get_bind()).get_table_names()):
        op.create_table('account_score',
        sa.Column('source', sa.String(), nullable=False),
        sa.Column('account_key', sa.String(), nullable=False),
        sa.Column('probability', sa.Float(), nullable=False),
        sa.Column('score', sa.Integer(), nullable=False),
        sa.Column('band', sa.String(), nullable=False),
        sa.Column('model_version', sa.String(), nullable=False),
        sa.Column('scored_at', sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint('source', 'account_key')
        )


def downgrade() -> None:
    op.drop_table('account_score')
