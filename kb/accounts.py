"""Accounts: users, roles, passwords, sign-in throttling, invitations, API tokens and the audit log.

Password hashing lives here and nowhere else. Every change to an account or a permission is written to the audit
log (who, what, when); no password or token is ever written there, nor to any other log.
"""
from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import case, delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash, generate_password_hash

from kb.db import for_update, is_unique_violation
from kb.errors import InvalidFields, NotAllowed, NotFound
from kb.models import ROLES, ApiToken, AuditEntry, Invitation, SignInFailure, User, utcnow

MIN_PASSWORD = 12
# Long passphrases are welcome; the whole password is hashed (scrypt has no 72-byte limit like bcrypt).
MAX_PASSWORD = 1024
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,79}$")
# A valid hash to compare against when the account does not exist, so timing does not reveal names.
_DUMMY_HASH = generate_password_hash("not-a-real-password-0000", method="scrypt")

# Sign-in throttling. A few mistakes are free; after that each further failure doubles the wait before the next
# attempt is even looked at, up to MAX_WAIT. There is no permanent lock an attacker could use against a real user.
# A whole school often shares one address, so addresses get more free failures than accounts.
FREE_FAILURES = {"account": 5, "address": 30}
MAX_WAIT = timedelta(minutes=15)
FORGET_AFTER = timedelta(hours=12)  # a key with no failure for this long starts again from zero

INVITATION_DAYS = 7
MAX_INVITATION_DAYS = 30


def hash_password(password: str) -> str:
    """scrypt with werkzeug's current parameters; the whole password is used (no truncation)."""
    return generate_password_hash(password, method="scrypt")


def password_problem(password: str) -> str | None:
    """Why this password is not acceptable, or None."""
    if not isinstance(password, str) or len(password) < MIN_PASSWORD:
        return f"must be at least {MIN_PASSWORD} characters"
    if len(password) > MAX_PASSWORD:
        return f"must be at most {MAX_PASSWORD} characters"
    return None


def check_name(name: str) -> str | None:
    if not isinstance(name, str) or not NAME_RE.match(name):
        return "use 1-80 letters, digits, dots, dashes or underscores, starting with a letter or digit"
    return None


def audit(session: Session, actor_id: int | None, action: str, target: str = "", **details) -> None:
    """Record an account or permission change. Never pass a password or a token in `details`."""
    session.add(AuditEntry(actor_id=actor_id, action=action, target=target, details=details))


def audit_entries(session: Session, limit: int = 100, offset: int = 0) -> list[AuditEntry]:
    return list(session.scalars(select(AuditEntry).order_by(AuditEntry.at.desc(), AuditEntry.id.desc())
                                .limit(limit).offset(offset)))


def find_user(session: Session, name: str) -> User | None:
    """The user with this name, ignoring case (names are unique without regard to case)."""
    if not isinstance(name, str) or not name:
        return None
    exact = session.scalar(select(User).where(User.name == name))
    if exact is not None:
        return exact
    return session.scalar(select(User).where(func.lower(User.name) == name.lower()).order_by(User.id))


def _name_errors(session: Session, name: str) -> str | None:
    problem = check_name(name)
    if problem:
        return problem
    if find_user(session, name) is not None:
        return f"there is already a user named {name!r}"
    return None


def create_user(session: Session, name: str, role: str, password: str, display_name: str = "",
                actor_id: int | None = None, **audit_details) -> User:
    errors: dict[str, str] = {}
    problem = _name_errors(session, name)
    if problem:
        errors["name"] = problem
    if role not in ROLES:
        errors["role"] = f"must be one of {', '.join(ROLES)}"
    problem = password_problem(password)
    if problem:
        errors["password"] = problem
    if isinstance(display_name, str) and len(display_name) > 200:
        errors["display_name"] = "must be at most 200 characters"
    if errors:
        raise InvalidFields(errors)
    user = User(name=name, role=role, display_name=(display_name or "").strip(), password_hash=hash_password(password))
    session.add(user)
    try:
        session.flush()
    except IntegrityError as e:  # the same name created by another request at the same moment
        if not is_unique_violation(e):
            raise
        raise InvalidFields({"name": f"there is already a user named {name!r}"}) from None
    audit(session, actor_id, "user.create", name, role=role, **audit_details)
    return user


def get_user(session: Session, name: str) -> User:
    user = session.scalar(select(User).where(User.name == name))
    if user is None:
        raise NotFound(f"There is no user named {name!r}.")
    return user


def authenticate(session: Session, name: str, password: str) -> User | None:
    """The active user with this name and password, or None. Takes the same time either way."""
    user = session.scalar(select(User).where(User.name == name)) if isinstance(name, str) else None
    return _password_matches(user, password)


def _password_matches(user: User | None, password: str) -> User | None:
    """The user if active and the password is theirs; an unknown user costs the same hashing time."""
    if not isinstance(password, str):
        password = ""
    if user is None or not user.password_hash:
        check_password_hash(_DUMMY_HASH, password)
        return None
    if not check_password_hash(user.password_hash, password):
        return None
    return user if user.active else None


# --- sign-in throttling -------------------------------------------------------------------------------------


def throttle_keys(name: str, address: str | None) -> list[str]:
    """The counters one sign-in attempt touches: the account named and the client's address."""
    keys = ["account:" + (name or "").strip().lower()[:150]]
    if address:
        keys.append("address:" + address[:150])
    return keys


def _wait_after(kind: str, failures: int) -> timedelta:
    free = FREE_FAILURES.get(kind, FREE_FAILURES["account"])
    if failures < free:
        return timedelta(0)
    return min(timedelta(seconds=2 ** min(failures - free, 20)), MAX_WAIT)


def _lock_counters(session: Session, keys: list[str], now: datetime) -> None:
    """Make sure a counter row exists for every key and lock them all until commit, so that parallel attempts on
    one account or address are counted one after the other, never both against the same old count. SQLite needs
    nothing: its write transactions run one at a time."""
    if session.get_bind().dialect.name == "sqlite":
        return
    from sqlalchemy.dialects.postgresql import insert as pg_insert

    keys = sorted(set(keys))  # always the same order: two attempts never wait for each other's second row
    session.execute(pg_insert(SignInFailure).values([{"key": k, "failures": 0, "last_failure_at": now} for k in keys])
                    .on_conflict_do_nothing(index_elements=["key"]))
    session.scalars(for_update(select(SignInFailure).where(SignInFailure.key.in_(keys)).order_by(SignInFailure.key)))\
        .all()


def sign_in_wait(session: Session, keys: list[str], now: datetime | None = None) -> int:
    """Seconds to wait before the next attempt on these keys may be checked (0: go ahead)."""
    now = now or utcnow()
    wait = timedelta(0)
    for row in session.scalars(select(SignInFailure).where(SignInFailure.key.in_(keys))):
        if now - row.last_failure_at >= FORGET_AFTER:
            continue
        until = row.last_failure_at + _wait_after(row.key.split(":", 1)[0], row.failures)
        wait = max(wait, until - now)
    return int(-(-wait.total_seconds() // 1))  # whole seconds, rounded up


def record_sign_in_failure(session: Session, keys: list[str], now: datetime | None = None) -> None:
    """Count a failed attempt on every key. The counts live in the database, so every server process sees them."""
    now = now or utcnow()
    for key in keys:
        row = session.get(SignInFailure, key)
        if row is None:
            session.add(SignInFailure(key=key, failures=1, last_failure_at=now))
        else:
            row.failures = 1 if now - row.last_failure_at >= FORGET_AFTER else row.failures + 1
            row.last_failure_at = now
    # Counters nobody touched for a long time would only grow the table (those another attempt holds stay for now).
    stale = (select(SignInFailure.key).where(SignInFailure.last_failure_at < now - FORGET_AFTER,
                                             SignInFailure.key.not_in(keys))
             .with_for_update(skip_locked=True))
    session.execute(delete(SignInFailure).where(SignInFailure.key.in_(stale)))
    session.flush()


def clear_sign_in_failures(session: Session, keys: list[str]) -> None:
    session.execute(delete(SignInFailure).where(SignInFailure.key.in_(keys)))


@dataclass
class SignIn:
    """One sign-in attempt: the user named (if any), the counters it touches, and the wait (> 0: throttled)."""

    name: str
    keys: list[str]
    user: User | None = None
    wait: int = 0


def begin_sign_in(session: Session, name: str, address: str | None, now: datetime | None = None) -> SignIn:
    """Check the throttle and count this attempt as a failure in advance; `finish_sign_in` takes it back if the
    password is right. Counting first means parallel guesses queue up behind each other, and lets the caller commit
    (releasing the database's write lock) before the deliberately slow password check."""
    now = now or utcnow()
    name = name if isinstance(name, str) else ""
    attempt = SignIn(name, throttle_keys(name, address))
    _lock_counters(session, attempt.keys, now)
    attempt.wait = sign_in_wait(session, attempt.keys, now)
    if attempt.wait:
        return attempt  # not counted, and the password is not even looked at
    record_sign_in_failure(session, attempt.keys, now)
    attempt.user = session.scalar(select(User).where(User.name == name)) if name else None
    return attempt


def check_sign_in(attempt: SignIn, password: str) -> User | None:
    """The user if the password is right and the account active. No database access; same time either way."""
    if attempt.wait:
        return None
    return _password_matches(attempt.user, password)


def finish_sign_in(session: Session, attempt: SignIn) -> None:
    """After a successful check: forget the account's failures and take this attempt off the address's count
    (one good account must not unlock an address, so the rest of that count only fades with time)."""
    clear_sign_in_failures(session, attempt.keys[:1])
    if attempt.keys[1:]:  # in SQL, not read-then-write: other attempts on the address may be counting now
        session.execute(update(SignInFailure).where(SignInFailure.key.in_(attempt.keys[1:]))
                        .values(failures=case((SignInFailure.failures > 0, SignInFailure.failures - 1), else_=0))
                        .execution_options(synchronize_session=False))


def sign_in(session: Session, name: str, password: str, address: str | None, now: datetime | None = None) -> SignIn:
    """All three steps in one transaction (the web view commits between them). The caller commits."""
    attempt = begin_sign_in(session, name, address, now)
    user = check_sign_in(attempt, password)
    if user is not None:
        finish_sign_in(session, attempt)
    attempt.user = user
    return attempt


# --- passwords and sessions ---------------------------------------------------------------------------------


def set_password(session: Session, user: User, password: str, actor_id: int | None = None) -> None:
    """Change a password; every existing session of the user ends."""
    problem = password_problem(password)
    if problem:
        raise InvalidFields({"password": problem})
    user.password_hash = hash_password(password)
    end_sessions(user)
    audit(session, actor_id if actor_id is not None else user.id, "user.password", user.name)


def change_own_password(session: Session, user: User, current: str, new: str, confirm: str | None = None) -> None:
    """A user changes their own password; the current one is required."""
    if not isinstance(current, str) or not user.password_hash or not check_password_hash(user.password_hash, current):
        raise InvalidFields({"current_password": "is not your current password"})
    if confirm is not None and confirm != new:
        raise InvalidFields({"confirm_password": "does not match the new password"})
    set_password(session, user, new, user.id)


def end_sessions(user: User) -> None:
    """Invalidate every session and remember-me cookie of the user."""
    user.session_version = (user.session_version or 1) + 1


# --- roles and deactivation ---------------------------------------------------------------------------------


def _active_admins(session: Session) -> int:
    return session.scalar(select(func.count(User.id)).where(User.role == "admin", User.active.is_(True))) or 0


def change_role(session: Session, actor_id: int | None, user: User, role: str) -> None:
    if role not in ROLES:
        raise InvalidFields({"role": f"must be one of {', '.join(ROLES)}"})
    if role == user.role:
        return
    if user.role == "admin" and user.active and _active_admins(session) <= 1:
        raise InvalidFields({"role": "this is the last active administrator; make someone else an administrator first"})
    old, user.role = user.role, role
    audit(session, actor_id, "user.role", user.name, **{"from": old, "to": role})


def deactivate_user(session: Session, actor_id: int | None, user: User) -> None:
    """The user can no longer sign in or use tokens; their sessions end. Their past revisions keep their name."""
    if not user.active:
        return
    if actor_id is not None and actor_id == user.id:
        raise NotAllowed("You cannot deactivate your own account.")
    if user.role == "admin" and _active_admins(session) <= 1:
        raise NotAllowed("This is the last active administrator.")
    user.active = False
    end_sessions(user)
    now = utcnow()
    for token in session.scalars(select(ApiToken).where(ApiToken.user_id == user.id, ApiToken.revoked_at.is_(None))):
        token.revoked_at = now
    audit(session, actor_id, "user.deactivate", user.name)


def reactivate_user(session: Session, actor_id: int | None, user: User) -> None:
    if user.active:
        return
    user.active = True
    audit(session, actor_id, "user.reactivate", user.name)


# --- invitations --------------------------------------------------------------------------------------------


def _digest(secret: str) -> str:
    # Tokens are 256 random bits, so a fast hash is enough at rest (unlike passwords).
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def create_invitation(session: Session, actor_id: int | None, name: str, role: str, days: int = INVITATION_DAYS,
                      now: datetime | None = None) -> str:
    """An invitation for a new account. Returns the secret for the link (shown once; only its hash is kept)."""
    now = now or utcnow()
    errors: dict[str, str] = {}
    problem = _name_errors(session, name)
    if problem:
        errors["name"] = problem
    if role not in ROLES:
        errors["role"] = f"must be one of {', '.join(ROLES)}"
    if not isinstance(days, int) or not 1 <= days <= MAX_INVITATION_DAYS:
        errors["days"] = f"must be between 1 and {MAX_INVITATION_DAYS} days"
    if errors:
        raise InvalidFields(errors)
    # A newer invitation for the same name replaces any older one still open.
    for old in session.scalars(select(Invitation).where(func.lower(Invitation.name) == name.lower(),
                                                        Invitation.used_at.is_(None))):
        session.delete(old)
    secret = secrets.token_urlsafe(32)
    session.add(Invitation(token_hash=_digest(secret), name=name, role=role, created_by_id=actor_id, created_at=now,
                           expires_at=now + timedelta(days=days)))
    audit(session, actor_id, "invitation.create", name, role=role, days=days)
    return secret


def open_invitation(session: Session, secret: str, now: datetime | None = None) -> Invitation | None:
    """The invitation for this secret if it can still be used, else None."""
    if not isinstance(secret, str) or not secret or len(secret) > 200:
        return None
    now = now or utcnow()
    inv = session.scalar(select(Invitation).where(Invitation.token_hash == _digest(secret)))
    if inv is None or inv.used_at is not None or inv.expires_at <= now:
        return None
    return inv


def pending_invitations(session: Session, now: datetime | None = None) -> list[Invitation]:
    now = now or utcnow()
    return list(session.scalars(select(Invitation).where(Invitation.used_at.is_(None), Invitation.expires_at > now)
                                .order_by(Invitation.created_at.desc())))


def accept_invitation(session: Session, secret: str, password: str, display_name: str = "",
                      confirm: str | None = None, now: datetime | None = None) -> User:
    """Create the invited account with the password the invitee chose; the link cannot be used again."""
    now = now or utcnow()
    inv = open_invitation(session, secret, now)
    if inv is not None:  # locked until commit, and looked at again: the same link may be used twice at once
        inv = session.scalar(for_update(select(Invitation).where(Invitation.id == inv.id)))
    if inv is None or inv.used_at is not None:
        raise NotFound("This invitation link is not valid: it may have expired or been used already.")
    if confirm is not None and confirm != password:
        raise InvalidFields({"confirm_password": "does not match the password"})
    user = create_user(session, inv.name, inv.role, password, display_name, actor_id=inv.created_by_id,
                       via="invitation")
    inv.used_at = now
    audit(session, user.id, "invitation.accept", user.name)
    return user


def cancel_invitation(session: Session, actor_id: int | None, invitation_id: int) -> None:
    inv = session.get(Invitation, invitation_id)
    if inv is None or inv.used_at is not None:
        raise NotFound("There is no open invitation with that number.")
    audit(session, actor_id, "invitation.cancel", inv.name)
    session.delete(inv)


# --- API tokens ---------------------------------------------------------------------------------------------


def token_digest(token: str) -> str:
    return _digest(token)


def create_token(session: Session, user: User, name: str = "") -> str:
    """A new API token for the user. The token itself is returned once and only its hash is stored."""
    name = (name or "").strip()[:100]
    token = "kb_" + secrets.token_urlsafe(32)
    session.add(ApiToken(user_id=user.id, name=name, token_hash=token_digest(token)))
    audit(session, user.id, "token.create", user.name, token_name=name)
    return token


def list_tokens(session: Session, user: User) -> list[ApiToken]:
    """The user's tokens that still work, newest first (names and dates only: the secrets are not kept)."""
    return list(session.scalars(select(ApiToken).where(ApiToken.user_id == user.id, ApiToken.revoked_at.is_(None))
                                .order_by(ApiToken.created_at.desc(), ApiToken.id.desc())))


def user_for_token(session: Session, token: str) -> User | None:
    if not token or not isinstance(token, str) or len(token) > 200:
        return None
    row = session.scalar(select(ApiToken).where(ApiToken.token_hash == token_digest(token),
                                                ApiToken.revoked_at.is_(None)))
    if row is None or not row.user.active:
        return None
    return row.user


def revoke_token(session: Session, user: User, token_id: int) -> None:
    row = session.get(ApiToken, token_id)
    if row is None or row.user_id != user.id or row.revoked_at is not None:
        raise NotFound("There is no such token.")
    row.revoked_at = utcnow()
    audit(session, user.id, "token.revoke", user.name, token_name=row.name)
