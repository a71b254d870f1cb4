"""The database tables: accounts, pages and their revisions, links, tours, and the bookkeeping around them.

The database is the source of truth. Everything else (the search index, cached HTML) is derived from it and can be
rebuilt. A `Page` row holds the current state of a page for fast reads; every state it ever had is a `Revision`.
"""
from __future__ import annotations

from datetime import date, datetime, timezone
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON, list[str]: JSON}


ROLES = ("reader", "contributor", "curator", "admin")
VISIBILITIES = ("public", "staff", "restricted")


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(80), unique=True)
    display_name: Mapped[str] = mapped_column(String(200), default="")
    role: Mapped[str] = mapped_column(String(20), default="reader")
    password_hash: Mapped[str] = mapped_column(String(300), default="")
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    # Bumped on logout, password change and deactivation: every older session and cookie stops working.
    session_version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    last_visit_at: Mapped[datetime | None] = mapped_column(DateTime)
    previous_visit_at: Mapped[datetime | None] = mapped_column(DateTime)
    feed_token_hash: Mapped[str | None] = mapped_column(String(128), unique=True)
    follows_kinds: Mapped[list[str]] = mapped_column(JSON, default=list)
    leaving: Mapped[bool] = mapped_column(Boolean, default=False)

    @property
    def label(self) -> str:
        return self.display_name or self.name


class ApiToken(Base):
    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    name: Mapped[str] = mapped_column(String(100), default="")
    token_hash: Mapped[str] = mapped_column(String(128), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime)

    user: Mapped[User] = relationship()


class Invitation(Base):
    __tablename__ = "invitations"

    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(128), unique=True)
    name: Mapped[str] = mapped_column(String(80))
    role: Mapped[str] = mapped_column(String(20))
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime)
    used_at: Mapped[datetime | None] = mapped_column(DateTime)


class SignInFailure(Base):
    """Failed sign-ins per key ("account:NAME" or "address:IP"); kept in the database so every process sees them."""

    __tablename__ = "sign_in_failures"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    last_failure_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class AuditEntry(Base):
    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, index=True)
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    action: Mapped[str] = mapped_column(String(80))
    target: Mapped[str] = mapped_column(String(200), default="")
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)

    actor: Mapped[User | None] = relationship()


class Page(Base):
    """The current state of a page (a copy of its newest revision, for fast reads) plus its bookkeeping."""

    __tablename__ = "pages"
    # Deleted pages are few: index only them. A full index on deleted_at led SQLite, which has no statistics
    # without ANALYZE, to answer "slug IN (...) AND deleted_at IS NULL" by walking every live page.
    __table_args__ = (Index("ix_pages_deleted", "deleted_at", sqlite_where=text("deleted_at IS NOT NULL"),
                            postgresql_where=text("deleted_at IS NOT NULL")),)

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(200), unique=True)
    title: Mapped[str] = mapped_column(String(300))
    kind: Mapped[str] = mapped_column(String(20), index=True)
    status: Mapped[str | None] = mapped_column(String(40), index=True)
    fields: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    tags: Mapped[list[str]] = mapped_column(JSON, default=list)
    visibility: Mapped[str] = mapped_column(String(20), default="public", index=True)
    readers: Mapped[list[str]] = mapped_column(JSON, default=list)
    sources: Mapped[list[str]] = mapped_column(JSON, default=list)
    body: Mapped[str] = mapped_column(Text, default="")
    revision: Mapped[int] = mapped_column(Integer, default=0)
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), index=True)
    verifier_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    review_every: Mapped[int] = mapped_column(Integer, default=180)
    verified_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    verified_on: Mapped[datetime | None] = mapped_column(DateTime)
    verified_revision: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, index=True)
    updated_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime)
    deleted_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))

    owner: Mapped[User | None] = relationship(foreign_keys=[owner_id])
    verifier: Mapped[User | None] = relationship(foreign_keys=[verifier_id])
    verified_by: Mapped[User | None] = relationship(foreign_keys=[verified_by_id])
    updated_by: Mapped[User | None] = relationship(foreign_keys=[updated_by_id])


class Revision(Base):
    """The whole state of a page at one save. Never changed after it is written, except its cached HTML."""

    __tablename__ = "revisions"
    __table_args__ = (UniqueConstraint("page_id", "number", name="uq_revision_number"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    page_id: Mapped[int] = mapped_column(ForeignKey("pages.id"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    slug: Mapped[str] = mapped_column(String(200))
    title: Mapped[str] = mapped_column(String(300))
    kind: Mapped[str] = mapped_column(String(20))
    fields: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    tags: Mapped[list[str]] = mapped_column(JSON, default=list)
    visibility: Mapped[str] = mapped_column(String(20))
    readers: Mapped[list[str]] = mapped_column(JSON, default=list)
    sources: Mapped[list[str]] = mapped_column(JSON, default=list)
    body: Mapped[str] = mapped_column(Text, default="")
    # Rendered body; cleared when the pages it links to appear or disappear, re-rendered on the next view.
    html: Mapped[str | None] = mapped_column(Text)
    author_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    comment: Mapped[str] = mapped_column(String(500), default="")

    author: Mapped[User | None] = relationship()


class Link(Base):
    """A link from a page (in its body or a link field) to a slug, which may not exist yet ("wanted")."""

    __tablename__ = "links"

    id: Mapped[int] = mapped_column(primary_key=True)
    source_id: Mapped[int] = mapped_column(ForeignKey("pages.id"), index=True)
    target_slug: Mapped[str] = mapped_column(String(200), index=True)
    via: Mapped[str] = mapped_column(String(60), default="body")


class PageTag(Base):
    __tablename__ = "page_tags"

    page_id: Mapped[int] = mapped_column(ForeignKey("pages.id"), primary_key=True)
    tag: Mapped[str] = mapped_column(String(100), primary_key=True, index=True)


class SlugRedirect(Base):
    """An old slug of a renamed page, so that old links and bookmarks keep working."""

    __tablename__ = "slug_redirects"

    old_slug: Mapped[str] = mapped_column(String(200), primary_key=True)
    page_id: Mapped[int] = mapped_column(ForeignKey("pages.id"))


class IndexQueueEntry(Base):
    """A page whose search-index entry must be refreshed. Written in the same transaction as the save."""

    __tablename__ = "index_queue"

    id: Mapped[int] = mapped_column(primary_key=True)
    page_id: Mapped[int] = mapped_column(Integer, index=True)
    enqueued_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Tour(Base):
    __tablename__ = "tours"

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(200), unique=True)
    title: Mapped[str] = mapped_column(String(300))
    description: Mapped[str] = mapped_column(Text, default="")
    audience: Mapped[list[str]] = mapped_column(JSON, default=list)
    minutes: Mapped[int | None] = mapped_column(Integer)
    revision: Mapped[int] = mapped_column(Integer, default=0)
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)

    stops: Mapped[list[TourStop]] = relationship(
        order_by="TourStop.position", cascade="all, delete-orphan", back_populates="tour"
    )
    owner: Mapped[User | None] = relationship()


class TourStop(Base):
    __tablename__ = "tour_stops"

    id: Mapped[int] = mapped_column(primary_key=True)
    tour_id: Mapped[int] = mapped_column(ForeignKey("tours.id"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    page_id: Mapped[int] = mapped_column(ForeignKey("pages.id"), index=True)
    note: Mapped[str] = mapped_column(Text, default="")
    question: Mapped[str] = mapped_column(Text, default="")

    tour: Mapped[Tour] = relationship(back_populates="stops")
    page: Mapped[Page] = relationship()


class TourRevision(Base):
    __tablename__ = "tour_revisions"
    __table_args__ = (UniqueConstraint("tour_id", "number", name="uq_tour_revision_number"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    tour_id: Mapped[int] = mapped_column(ForeignKey("tours.id"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    snapshot: Mapped[dict[str, Any]] = mapped_column(JSON)
    author_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    comment: Mapped[str] = mapped_column(String(500), default="")

    author: Mapped[User | None] = relationship()


class TourRead(Base):
    """One user has read one stop's page of a tour, at a given page revision."""

    __tablename__ = "tour_reads"
    __table_args__ = (UniqueConstraint("user_id", "tour_id", "page_id", name="uq_tour_read"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    tour_id: Mapped[int] = mapped_column(ForeignKey("tours.id"), index=True)
    page_id: Mapped[int] = mapped_column(ForeignKey("pages.id"))
    page_revision: Mapped[int] = mapped_column(Integer)
    read_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Watch(Base):
    """A user watches a page or a tag."""

    __tablename__ = "watches"
    __table_args__ = (Index("ix_watch_user", "user_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    page_id: Mapped[int | None] = mapped_column(ForeignKey("pages.id"))
    tag: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Setting(Base):
    """Small facts about this instance, such as whether the bundled content was imported."""

    __tablename__ = "settings"

    key: Mapped[str] = mapped_column(String(100), primary_key=True)
    value: Mapped[str] = mapped_column(Text, default="")


class RenderedView(Base):
    """Fragments of a page view as one reader saw them: page views are served from here (see kb.viewcache).

    Derived data, like the search index and the per-revision HTML: kept in the database so that every server
    process shares it. The key names everything the fragments depend on, so a row is never stale, only unused;
    the oldest rows are pruned.
    """

    __tablename__ = "rendered_views"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    page_id: Mapped[int] = mapped_column(Integer, index=True)
    stored_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, index=True)
    html: Mapped[bytes] = mapped_column(LargeBinary)


class Draft(Base):
    """Work in progress of a multi-step form (the handover wizard), kept between steps."""

    __tablename__ = "drafts"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    kind: Mapped[str] = mapped_column(String(20))
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    step: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


__all__ = [
    "Base", "User", "ApiToken", "Invitation", "SignInFailure", "AuditEntry", "Page", "Revision", "Link",
    "PageTag", "SlugRedirect", "IndexQueueEntry", "Tour", "TourStop", "TourRevision", "TourRead", "Watch",
    "Draft", "Setting", "RenderedView", "ROLES", "VISIBILITIES", "utcnow", "date",
]
