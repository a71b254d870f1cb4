"""Feed tokens: a secret feed address per person, so a feed reader (which cannot sign in) sees what its owner may
see. Only a hash of the token is kept; the token itself is shown once."""
from __future__ import annotations

import secrets

from sqlalchemy import select
from sqlalchemy.orm import Session

from kb.access import Viewer
from kb.accounts import audit, token_digest
from kb.curation.watching import signed_in_user
from kb.models import User


def create_feed_token(session: Session, viewer: Viewer) -> str:
    """A new secret feed address for the viewer; the token is returned once, only its hash is kept."""
    user = signed_in_user(session, viewer)
    token = "kbf_" + secrets.token_urlsafe(32)
    user.feed_token_hash = token_digest(token)
    audit(session, user.id, "feed_token.create", user.name)
    session.flush()
    return token


def revoke_feed_token(session: Session, viewer: Viewer) -> None:
    user = signed_in_user(session, viewer)
    if user.feed_token_hash:
        user.feed_token_hash = None
        audit(session, user.id, "feed_token.revoke", user.name)
    session.flush()


def viewer_for_feed_token(session: Session, token: str | None, anonymous_read: bool) -> Viewer:
    """Whom a feed request reads as: the token's (active) owner, or an anonymous visitor."""
    if token:
        user = session.scalar(select(User).where(User.feed_token_hash == token_digest(token)))
        if user is not None and user.active:
            return Viewer(user.id, user.name, user.role, anonymous_read)
    return Viewer(anonymous_read=anonymous_read)
