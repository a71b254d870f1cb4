"""Stored page views are kept per page, and the database-wide change counter goes.

A stored view's key now names everything it depends on (kb.viewcache), so the `generation` table that used to
invalidate every view on any change is dropped, and `rendered_views` holds the page id and when a view was stored
(for pruning the oldest) instead of a generation. Stored views are derived data: the table is made anew, empty.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-04
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index('ix_rendered_views_generation', table_name='rendered_views')
    op.drop_table('rendered_views')
    op.create_table('rendered_views',
        sa.Column('key', sa.String(length=200), nullable=False),
        sa.Column('page_id', sa.Integer(), nullable=False),
        sa.Column('stored_at', sa.DateTime(), nullable=False),
        sa.Column('html', sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint('key')
        )
    op.create_index('ix_rendered_views_page_id', 'rendered_views', ['page_id'], unique=False)
    op.create_index('ix_rendered_views_stored_at', 'rendered_views', ['stored_at'], unique=False)
    op.drop_table('generation')


def downgrade() -> None:
    op.create_table('generation',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('value', sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint('id')
        )
    op.drop_index('ix_rendered_views_stored_at', table_name='rendered_views')
    op.drop_index('ix_rendered_views_page_id', table_name='rendered_views')
    op.drop_table('rendered_views')
    op.create_table('rendered_views',
        sa.Column('key', sa.String(length=200), nullable=False),
        sa.Column('generation', sa.Integer(), nullable=False),
        sa.Column('html', sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint('key')
        )
    op.create_index('ix_rendered_views_generation', 'rendered_views', ['generation'], unique=False)
