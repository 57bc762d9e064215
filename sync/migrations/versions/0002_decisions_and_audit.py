"""Decisions and the audit log: consent timeline, memberships, assignments, routing counters,
holdouts, the hash-chained audit log and its anchors.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A store made by create_all between releases may hold some of these already: only what is missing.
    existing = set(sa.inspect(op.get_bind()).get_table_names())
    if 'consent_event' not in existing:
        op.create_table('consent_event',
        sa.Column('source', sa.String(), nullable=False),
        sa.Column('key', sa.String(), nullable=False),
        sa.Column('lead_key', sa.String(), nullable=False),
        sa.Column('channel', sa.String(), nullable=False),
        sa.Column('status', sa.String(), nullable=False),
        sa.Column('effective_at', sa.DateTime(), nullable=False),
        sa.Column('recorded_at', sa.DateTime(), nullable=False),
        sa.Column('lawful_basis', sa.String(), nullable=True),
        sa.Column('origin', sa.String(), nullable=True),
        sa.PrimaryKeyConstraint('source', 'key')
        )
        with op.batch_alter_table('consent_event', schema=None) as batch_op:
            batch_op.create_index('ix_consent_lead', ['source', 'lead_key', 'channel'], unique=False)

    if 'membership' not in existing:
        op.create_table('membership',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('audience', sa.String(), nullable=False),
        sa.Column('person', sa.String(), nullable=False),
        sa.Column('entered_at', sa.DateTime(), nullable=False),
        sa.Column('entry_reason', sa.String(), nullable=False),
        sa.Column('added_by_leadrelay', sa.Boolean(), nullable=False),
        sa.Column('exited_at', sa.DateTime(), nullable=True),
        sa.Column('exit_reason', sa.String(), nullable=True),
        sa.Column('identifiers', sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint('id')
        )
        with op.batch_alter_table('membership', schema=None) as batch_op:
            batch_op.create_index('ix_membership_person', ['audience', 'person'], unique=False)

    if 'assignment' not in existing:
        op.create_table('assignment',
        sa.Column('rule', sa.String(), nullable=False),
        sa.Column('lead_key', sa.String(), nullable=False),
        sa.Column('status', sa.String(), nullable=False),
        sa.Column('rep_id', sa.String(), nullable=True),
        sa.Column('data', sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint('rule', 'lead_key')
        )

    if 'routing_counter' not in existing:
        op.create_table('routing_counter',
        sa.Column('rule', sa.String(), nullable=False),
        sa.Column('kind', sa.String(), nullable=False),
        sa.Column('rep_id', sa.String(), nullable=False),
        sa.Column('day', sa.String(), nullable=False),
        sa.Column('value', sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint('rule', 'kind', 'rep_id', 'day')
        )

    if 'holdout' not in existing:
        op.create_table('holdout',
        sa.Column('rule', sa.String(), nullable=False),
        sa.Column('subject', sa.String(), nullable=False),
        sa.Column('control', sa.Boolean(), nullable=False),
        sa.Column('share', sa.Float(), nullable=False),
        sa.Column('action', sa.String(), nullable=False),
        sa.Column('decided_at', sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint('rule', 'subject')
        )

    if 'audit_log' not in existing:
        op.create_table('audit_log',
        sa.Column('id', sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column('at', sa.DateTime(), nullable=False),
        sa.Column('pipeline', sa.String(), nullable=False),
        sa.Column('run_id', sa.Integer(), nullable=True),
        sa.Column('kind', sa.String(), nullable=False),
        sa.Column('subject', sa.String(), nullable=False),
        sa.Column('data', sa.Text(), nullable=False),
        sa.Column('prev_hash', sa.String(), nullable=False),
        sa.Column('hash', sa.String(), nullable=False),
        sa.PrimaryKeyConstraint('id')
        )
        with op.batch_alter_table('audit_log', schema=None) as batch_op:
            batch_op.create_index(batch_op.f('ix_audit_log_run_id'), ['run_id'], unique=False)
            batch_op.create_index(batch_op.f('ix_audit_log_subject'), ['subject'], unique=False)

    if 'audit_anchor' not in existing:
        op.create_table('audit_anchor',
        sa.Column('id', sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column('at', sa.DateTime(), nullable=False),
        sa.Column('entries', sa.BigInteger(), nullable=False),
        sa.Column('head_hash', sa.String(), nullable=False),
        sa.Column('prev_hash', sa.String(), nullable=False),
        sa.Column('hash', sa.String(), nullable=False),
        sa.PrimaryKeyConstraint('id')
        )


def downgrade() -> None:
    op.drop_table('audit_anchor')
    op.drop_table('audit_log')
    op.drop_table('holdout')
    op.drop_table('routing_counter')
    op.drop_table('assignment')
    op.drop_table('membership')
    op.drop_table('consent_event')
