"""The schema of the first release (the tables `Database.create_all()` made before migrations existed).

A database made by that release has these tables but no `alembic_version`: kb.db recognises it and runs this
revision on it, which creates only what is missing (tables and indexes that release added later than the database
was made) and drops the full deleted_at index older instances had, as that release did at start-up.

Revision ID: 0001
Revises:
Create Date: 2026-12-04
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


_existing: set[str] = set()  # the tables the database had before this revision (none on a new database)


def _has_table(name: str) -> bool:
    return name in _existing


def _has_index(table: str, name: str) -> bool:
    if table not in _existing:
        return False  # created just now, with none
    return any(index["name"] == name for index in sa.inspect(op.get_bind()).get_indexes(table))


def upgrade() -> None:
    _existing.clear()
    _existing.update(sa.inspect(op.get_bind()).get_table_names())
    if "pages" in _existing:
        # Older instances had a full index on pages.deleted_at, which misled SQLite's planner (see models.Page).
        op.execute("DROP INDEX IF EXISTS ix_pages_deleted_at")
    if not _has_table('generation'):
        op.create_table('generation',
            sa.Column('id', sa.Integer(), nullable=False),
            sa.Column('value', sa.Integer(), nullable=False),
            sa.PrimaryKeyConstraint('id')
            )
    if not _has_table('index_queue'):
        op.create_table('index_queue',
            sa.Column('id', sa.Integer(), nullable=False),
            sa.Column('page_id', sa.Integer(), nullable=False),
            sa.Column('enqueued_at', sa.DateTime(), nullable=False),
            sa.PrimaryKeyConstraint('id')
            )
    if not _has_index('index_queue', 'ix_index_queue_page_id'):
        op.create_index('ix_index_queue_page_id', 'index_queue', ['page_id'], unique=False)

    if not _has_table('rendered_views'):
        op.create_table('rendered_views',
            sa.Column('key', sa.String(length=200), nullable=False),
            sa.Column('generation', sa.Integer(), nullable=False),
            sa.Column('html', sa.LargeBinary(), nullable=False),
            sa.PrimaryKeyConstraint('key')
            )
    if not _has_index('rendered_views', 'ix_rendered_views_generation'):
        op.create_index('ix_rendered_views_generation', 'rendered_views', ['generation'], unique=False)

    if not _has_table('settings'):
        op.create_table('settings',
            sa.Column('key', sa.String(length=100), nullable=False),
            sa.Column('value', sa.Text(), nullable=False),
            sa.PrimaryKeyConstraint('key')
            )
    if not _has_table('sign_in_failures'):
        op.create_table('sign_in_failures',
            sa.Column('key', sa.String(length=200), nullable=False),
            sa.Column('failures', sa.Integer(), nullable=False),
            sa.Column('last_failure_at', sa.DateTime(), nullable=False),
            sa.PrimaryKeyConstraint('key')
            )
    if not _has_table('users'):
        op.create_table('users',
            sa.Column('id', sa.Integer(), nullable=False),
            sa.Column('name', sa.String(length=80), nullable=False),
            sa.Column('display_name', sa.String(length=200), nullable=False),
            sa.Column('role', sa.String(length=20), nullable=False),
            sa.Column('password_hash', sa.String(length=300), nullable=False),
            sa.Column('active', sa.Boolean(), nullable=False),
            sa.Column('session_version', sa.Integer(), nullable=False),
            sa.Column('created_at', sa.DateTime(), nullable=False),
            sa.Column('last_visit_at', sa.DateTime(), nullable=True),
            sa.Column('previous_visit_at', sa.DateTime(), nullable=True),
            sa.Column('feed_token_hash', sa.String(length=128), nullable=True),
            sa.Column('follows_kinds', sa.JSON(), nullable=False),
            sa.Column('leaving', sa.Boolean(), nullable=False),
            sa.PrimaryKeyConstraint('id'),
            sa.UniqueConstraint('feed_token_hash'),
            sa.UniqueConstraint('name')
            )
    if not _has_table('api_tokens'):
        op.create_table('api_tokens',
            sa.Column('id', sa.Integer(), nullable=False),
            sa.Column('user_id', sa.Integer(), nullable=False),
            sa.Column('name', sa.String(length=100), nullable=False),
            sa.Column('token_hash', sa.String(length=128), nullable=False),
            sa.Column('created_at', sa.DateTime(), nullable=False),
            sa.Column('last_used_at', sa.DateTime(), nullable=True),
            sa.Column('revoked_at', sa.DateTime(), nullable=True),
            sa.ForeignKeyConstraint(['user_id'], ['users.id'], ),
            sa.PrimaryKeyConstraint('id'),
            sa.UniqueConstraint('token_hash')
            )
    if not _has_index('api_tokens', 'ix_api_tokens_user_id'):
        op.create_index('ix_api_tokens_user_id', 'api_tokens', ['user_id'], unique=False)

    if not _has_table('audit_log'):
        op.create_table('audit_log',
            sa.Column('id', sa.Integer(), nullable=False),
            sa.Column('at', sa.DateTime(), nullable=False),
            sa.Column('actor_id', sa.Integer(), nullable=True),
            sa.Column('action', sa.String(length=80), nullable=False),
            sa.Column('target', sa.String(length=200), nullable=False),
            sa.Column('details', sa.JSON(), nullable=False),
            sa.ForeignKeyConstraint(['actor_id'], ['users.id'], ),
            sa.PrimaryKeyConstraint('id')
            )
    if not _has_index('audit_log', 'ix_audit_log_at'):
        op.create_index('ix_audit_log_at', 'audit_log', ['at'], unique=False)

    if not _has_table('drafts'):
        op.create_table('drafts',
            sa.Column('id', sa.Integer(), nullable=False),
            sa.Column('user_id', sa.Integer(), nullable=False),
            sa.Column('kind', sa.String(length=20), nullable=False),
            sa.Column('data', sa.JSON(), nullable=False),
            sa.Column('step', sa.Integer(), nullable=False),
            sa.Column('updated_at', sa.DateTime(), nullable=False),
            sa.ForeignKeyConstraint(['user_id'], ['users.id'], ),
            sa.PrimaryKeyConstraint('id')
            )
    if not _has_index('drafts', 'ix_drafts_user_id'):
        op.create_index('ix_drafts_user_id', 'drafts', ['user_id'], unique=False)

    if not _has_table('invitations'):
        op.create_table('invitations',
            sa.Column('id', sa.Integer(), nullable=False),
            sa.Column('token_hash', sa.String(length=128), nullable=False),
            sa.Column('name', sa.String(length=80), nullable=False),
            sa.Column('role', sa.String(length=20), nullable=False),
            sa.Column('created_by_id', sa.Integer(), nullable=True),
            sa.Column('created_at', sa.DateTime(), nullable=False),
            sa.Column('expires_at', sa.DateTime(), nullable=False),
            sa.Column('used_at', sa.DateTime(), nullable=True),
            sa.ForeignKeyConstraint(['created_by_id'], ['users.id'], ),
            sa.PrimaryKeyConstraint('id'),
            sa.UniqueConstraint('token_hash')
            )
    if not _has_table('pages'):
        op.create_table('pages',
            sa.Column('id', sa.Integer(), nullable=False),
            sa.Column('slug', sa.String(length=200), nullable=False),
            sa.Column('title', sa.String(length=300), nullable=False),
            sa.Column('kind', sa.String(length=20), nullable=False),
            sa.Column('status', sa.String(length=40), nullable=True),
            sa.Column('fields', sa.JSON(), nullable=False),
            sa.Column('tags', sa.JSON(), nullable=False),
            sa.Column('visibility', sa.String(length=20), nullable=False),
            sa.Column('readers', sa.JSON(), nullable=False),
            sa.Column('sources', sa.JSON(), nullable=False),
            sa.Column('body', sa.Text(), nullable=False),
            sa.Column('revision', sa.Integer(), nullable=False),
            sa.Column('owner_id', sa.Integer(), nullable=True),
            sa.Column('verifier_id', sa.Integer(), nullable=True),
            sa.Column('review_every', sa.Integer(), nullable=False),
            sa.Column('verified_by_id', sa.Integer(), nullable=True),
            sa.Column('verified_on', sa.DateTime(), nullable=True),
            sa.Column('verified_revision', sa.Integer(), nullable=True),
            sa.Column('created_at', sa.DateTime(), nullable=False),
            sa.Column('updated_at', sa.DateTime(), nullable=False),
            sa.Column('updated_by_id', sa.Integer(), nullable=True),
            sa.Column('deleted_at', sa.DateTime(), nullable=True),
            sa.Column('deleted_by_id', sa.Integer(), nullable=True),
            sa.ForeignKeyConstraint(['deleted_by_id'], ['users.id'], ),
            sa.ForeignKeyConstraint(['owner_id'], ['users.id'], ),
            sa.ForeignKeyConstraint(['updated_by_id'], ['users.id'], ),
            sa.ForeignKeyConstraint(['verified_by_id'], ['users.id'], ),
            sa.ForeignKeyConstraint(['verifier_id'], ['users.id'], ),
            sa.PrimaryKeyConstraint('id'),
            sa.UniqueConstraint('slug')
            )
    if not _has_index('pages', 'ix_pages_deleted'):
        op.create_index('ix_pages_deleted', 'pages', ['deleted_at'], unique=False, sqlite_where=sa.text('deleted_at IS NOT NULL'), postgresql_where=sa.text('deleted_at IS NOT NULL'))
    if not _has_index('pages', 'ix_pages_kind'):
        op.create_index('ix_pages_kind', 'pages', ['kind'], unique=False)
    if not _has_index('pages', 'ix_pages_owner_id'):
        op.create_index('ix_pages_owner_id', 'pages', ['owner_id'], unique=False)
    if not _has_index('pages', 'ix_pages_status'):
        op.create_index('ix_pages_status', 'pages', ['status'], unique=False)
    if not _has_index('pages', 'ix_pages_updated_at'):
        op.create_index('ix_pages_updated_at', 'pages', ['updated_at'], unique=False)
    if not _has_index('pages', 'ix_pages_visibility'):
        op.create_index('ix_pages_visibility', 'pages', ['visibility'], unique=False)

    if not _has_table('tours'):
        op.create_table('tours',
            sa.Column('id', sa.Integer(), nullable=False),
            sa.Column('slug', sa.String(length=200), nullable=False),
            sa.Column('title', sa.String(length=300), nullable=False),
            sa.Column('description', sa.Text(), nullable=False),
            sa.Column('audience', sa.JSON(), nullable=False),
            sa.Column('minutes', sa.Integer(), nullable=True),
            sa.Column('revision', sa.Integer(), nullable=False),
            sa.Column('owner_id', sa.Integer(), nullable=True),
            sa.Column('created_at', sa.DateTime(), nullable=False),
            sa.Column('updated_at', sa.DateTime(), nullable=False),
            sa.ForeignKeyConstraint(['owner_id'], ['users.id'], ),
            sa.PrimaryKeyConstraint('id'),
            sa.UniqueConstraint('slug')
            )
    if not _has_table('links'):
        op.create_table('links',
            sa.Column('id', sa.Integer(), nullable=False),
            sa.Column('source_id', sa.Integer(), nullable=False),
            sa.Column('target_slug', sa.String(length=200), nullable=False),
            sa.Column('via', sa.String(length=60), nullable=False),
            sa.ForeignKeyConstraint(['source_id'], ['pages.id'], ),
            sa.PrimaryKeyConstraint('id')
            )
    if not _has_index('links', 'ix_links_source_id'):
        op.create_index('ix_links_source_id', 'links', ['source_id'], unique=False)
    if not _has_index('links', 'ix_links_target_slug'):
        op.create_index('ix_links_target_slug', 'links', ['target_slug'], unique=False)

    if not _has_table('page_tags'):
        op.create_table('page_tags',
            sa.Column('page_id', sa.Integer(), nullable=False),
            sa.Column('tag', sa.String(length=100), nullable=False),
            sa.ForeignKeyConstraint(['page_id'], ['pages.id'], ),
            sa.PrimaryKeyConstraint('page_id', 'tag')
            )
    if not _has_index('page_tags', 'ix_page_tags_tag'):
        op.create_index('ix_page_tags_tag', 'page_tags', ['tag'], unique=False)

    if not _has_table('revisions'):
        op.create_table('revisions',
            sa.Column('id', sa.Integer(), nullable=False),
            sa.Column('page_id', sa.Integer(), nullable=False),
            sa.Column('number', sa.Integer(), nullable=False),
            sa.Column('slug', sa.String(length=200), nullable=False),
            sa.Column('title', sa.String(length=300), nullable=False),
            sa.Column('kind', sa.String(length=20), nullable=False),
            sa.Column('fields', sa.JSON(), nullable=False),
            sa.Column('tags', sa.JSON(), nullable=False),
            sa.Column('visibility', sa.String(length=20), nullable=False),
            sa.Column('readers', sa.JSON(), nullable=False),
            sa.Column('sources', sa.JSON(), nullable=False),
            sa.Column('body', sa.Text(), nullable=False),
            sa.Column('html', sa.Text(), nullable=True),
            sa.Column('author_id', sa.Integer(), nullable=True),
            sa.Column('created_at', sa.DateTime(), nullable=False),
            sa.Column('comment', sa.String(length=500), nullable=False),
            sa.ForeignKeyConstraint(['author_id'], ['users.id'], ),
            sa.ForeignKeyConstraint(['page_id'], ['pages.id'], ),
            sa.PrimaryKeyConstraint('id'),
            sa.UniqueConstraint('page_id', 'number', name='uq_revision_number')
            )
    if not _has_index('revisions', 'ix_revisions_page_id'):
        op.create_index('ix_revisions_page_id', 'revisions', ['page_id'], unique=False)

    if not _has_table('slug_redirects'):
        op.create_table('slug_redirects',
            sa.Column('old_slug', sa.String(length=200), nullable=False),
            sa.Column('page_id', sa.Integer(), nullable=False),
            sa.ForeignKeyConstraint(['page_id'], ['pages.id'], ),
            sa.PrimaryKeyConstraint('old_slug')
            )
    if not _has_table('tour_reads'):
        op.create_table('tour_reads',
            sa.Column('id', sa.Integer(), nullable=False),
            sa.Column('user_id', sa.Integer(), nullable=False),
            sa.Column('tour_id', sa.Integer(), nullable=False),
            sa.Column('page_id', sa.Integer(), nullable=False),
            sa.Column('page_revision', sa.Integer(), nullable=False),
            sa.Column('read_at', sa.DateTime(), nullable=False),
            sa.ForeignKeyConstraint(['page_id'], ['pages.id'], ),
            sa.ForeignKeyConstraint(['tour_id'], ['tours.id'], ),
            sa.ForeignKeyConstraint(['user_id'], ['users.id'], ),
            sa.PrimaryKeyConstraint('id'),
            sa.UniqueConstraint('user_id', 'tour_id', 'page_id', name='uq_tour_read')
            )
    if not _has_index('tour_reads', 'ix_tour_reads_tour_id'):
        op.create_index('ix_tour_reads_tour_id', 'tour_reads', ['tour_id'], unique=False)
    if not _has_index('tour_reads', 'ix_tour_reads_user_id'):
        op.create_index('ix_tour_reads_user_id', 'tour_reads', ['user_id'], unique=False)

    if not _has_table('tour_revisions'):
        op.create_table('tour_revisions',
            sa.Column('id', sa.Integer(), nullable=False),
            sa.Column('tour_id', sa.Integer(), nullable=False),
            sa.Column('number', sa.Integer(), nullable=False),
            sa.Column('snapshot', sa.JSON(), nullable=False),
            sa.Column('author_id', sa.Integer(), nullable=True),
            sa.Column('created_at', sa.DateTime(), nullable=False),
            sa.Column('comment', sa.String(length=500), nullable=False),
            sa.ForeignKeyConstraint(['author_id'], ['users.id'], ),
            sa.ForeignKeyConstraint(['tour_id'], ['tours.id'], ),
            sa.PrimaryKeyConstraint('id'),
            sa.UniqueConstraint('tour_id', 'number', name='uq_tour_revision_number')
            )
    if not _has_index('tour_revisions', 'ix_tour_revisions_tour_id'):
        op.create_index('ix_tour_revisions_tour_id', 'tour_revisions', ['tour_id'], unique=False)

    if not _has_table('tour_stops'):
        op.create_table('tour_stops',
            sa.Column('id', sa.Integer(), nullable=False),
            sa.Column('tour_id', sa.Integer(), nullable=False),
            sa.Column('position', sa.Integer(), nullable=False),
            sa.Column('page_id', sa.Integer(), nullable=False),
            sa.Column('note', sa.Text(), nullable=False),
            sa.Column('question', sa.Text(), nullable=False),
            sa.ForeignKeyConstraint(['page_id'], ['pages.id'], ),
            sa.ForeignKeyConstraint(['tour_id'], ['tours.id'], ),
            sa.PrimaryKeyConstraint('id')
            )
    if not _has_index('tour_stops', 'ix_tour_stops_page_id'):
        op.create_index('ix_tour_stops_page_id', 'tour_stops', ['page_id'], unique=False)
    if not _has_index('tour_stops', 'ix_tour_stops_tour_id'):
        op.create_index('ix_tour_stops_tour_id', 'tour_stops', ['tour_id'], unique=False)

    if not _has_table('watches'):
        op.create_table('watches',
            sa.Column('id', sa.Integer(), nullable=False),
            sa.Column('user_id', sa.Integer(), nullable=False),
            sa.Column('page_id', sa.Integer(), nullable=True),
            sa.Column('tag', sa.String(length=100), nullable=True),
            sa.Column('created_at', sa.DateTime(), nullable=False),
            sa.ForeignKeyConstraint(['page_id'], ['pages.id'], ),
            sa.ForeignKeyConstraint(['user_id'], ['users.id'], ),
            sa.PrimaryKeyConstraint('id')
            )
    if not _has_index('watches', 'ix_watch_user'):
        op.create_index('ix_watch_user', 'watches', ['user_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('watches', schema=None) as batch_op:
        batch_op.drop_index('ix_watch_user')

    op.drop_table('watches')
    with op.batch_alter_table('tour_stops', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_tour_stops_tour_id'))
        batch_op.drop_index(batch_op.f('ix_tour_stops_page_id'))

    op.drop_table('tour_stops')
    with op.batch_alter_table('tour_revisions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_tour_revisions_tour_id'))

    op.drop_table('tour_revisions')
    with op.batch_alter_table('tour_reads', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_tour_reads_user_id'))
        batch_op.drop_index(batch_op.f('ix_tour_reads_tour_id'))

    op.drop_table('tour_reads')
    op.drop_table('slug_redirects')
    with op.batch_alter_table('revisions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_revisions_page_id'))

    op.drop_table('revisions')
    with op.batch_alter_table('page_tags', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_page_tags_tag'))

    op.drop_table('page_tags')
    with op.batch_alter_table('links', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_links_target_slug'))
        batch_op.drop_index(batch_op.f('ix_links_source_id'))

    op.drop_table('links')
    op.drop_table('tours')
    with op.batch_alter_table('pages', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_pages_visibility'))
        batch_op.drop_index(batch_op.f('ix_pages_updated_at'))
        batch_op.drop_index(batch_op.f('ix_pages_status'))
        batch_op.drop_index(batch_op.f('ix_pages_owner_id'))
        batch_op.drop_index(batch_op.f('ix_pages_kind'))
        batch_op.drop_index('ix_pages_deleted', sqlite_where=sa.text('deleted_at IS NOT NULL'), postgresql_where=sa.text('deleted_at IS NOT NULL'))

    op.drop_table('pages')
    op.drop_table('invitations')
    with op.batch_alter_table('drafts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_drafts_user_id'))

    op.drop_table('drafts')
    with op.batch_alter_table('audit_log', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_audit_log_at'))

    op.drop_table('audit_log')
    with op.batch_alter_table('api_tokens', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_api_tokens_user_id'))

    op.drop_table('api_tokens')
    op.drop_table('users')
    op.drop_table('sign_in_failures')
    op.drop_table('settings')
    with op.batch_alter_table('rendered_views', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_rendered_views_generation'))

    op.drop_table('rendered_views')
    with op.batch_alter_table('index_queue', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_index_queue_page_id'))

    op.drop_table('index_queue')
    op.drop_table('generation')
