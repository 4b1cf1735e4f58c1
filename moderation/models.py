"""Tables: articles, comments, the audit trail, API keys, moderators' page sessions and the site's settings."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Boolean, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint, false
from sqlalchemy.orm import Mapped, mapped_column, relationship

from moderation.db import Base, UTCDateTime, utcnow

APPROVED, PENDING, REJECTED = "approved", "pending", "rejected"
STATUSES = (APPROVED, PENDING, REJECTED)
ROLES = ("backend", "moderator", "admin")
REPORT_REASONS = ("insult", "spam", "off_topic", "misinformation", "other")
BANNED, SUSPECT = "banned", "suspect"
# What erasure leaves in place of an author's id and name.
ERASED = "[erased]"


class Article(Base):
    """A news article whose Kommentare section we moderate, known by the site's own id."""

    __tablename__ = "articles"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    external_id: Mapped[str] = mapped_column(String(200), unique=True)
    comments_open: Mapped[bool] = mapped_column(Boolean, default=True)
    premoderation: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # What the site's backend may send with a submission or in the settings, for the moderators' queue.
    title: Mapped[str | None] = mapped_column(String(300))
    url: Mapped[str | None] = mapped_column(String(2000))


class Comment(Base):
    """A reader comment with the decision taken on it."""

    __tablename__ = "comments"
    __table_args__ = (
        # Public listing and queue walk this index in id order for one article and status.
        Index("ix_comments_article_status_id", "article_id", "status", "id"),
        Index("ix_comments_status_id", "status", "id"),
        # Duplicate check at intake (author, article, recent), author histories and privacy requests.
        # Without the article and time columns SQLite chose the article index and read every comment of it.
        Index("ix_comments_author_article_created", "author_id", "article_id", "created_at"),
        # Author histories on the queue (counts by status): read from the index alone.
        Index("ix_comments_author_status", "author_id", "status"),
        # The queue walks these in its order: likely threats first, then the riskiest.
        Index("ix_comments_queue", "status", "reported", "threat_likely", "toxicity"),
        # The queue of one article (moderators filter by article); without it SQLite walked every
        # pending comment of every article through ix_comments_queue.
        Index("ix_comments_article_queue", "article_id", "status", "reported", "threat_likely", "toxicity"),
        # The measured leak reads the audit sample alone (a few percent of the comments).
        Index("ix_comments_audited", "audited", "model_version"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    article_id: Mapped[int] = mapped_column(ForeignKey("articles.id"))
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("comments.id"))
    author_id: Mapped[str] = mapped_column(String(200))
    author_name: Mapped[str] = mapped_column(String(200))
    text: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16))
    toxicity: Mapped[float] = mapped_column(Float)
    category: Mapped[str | None] = mapped_column(String(32))
    reasons: Mapped[list[str]] = mapped_column(JSON, default=list)
    model_version: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    decided_by: Mapped[str | None] = mapped_column(String(200))
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Reader reports: how many distinct readers reported it, and whether that pulled it into the queue.
    report_count: Mapped[int] = mapped_column(Integer, default=0)
    reported: Mapped[bool] = mapped_column(Boolean, default=False)
    # A moderator's claim, so two moderators never review the same comment.
    claimed_by: Mapped[str | None] = mapped_column(String(200))
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # What the model decided on its own at intake (approved or rejected; None when it held the comment or a
    # rule decided), and whether that decision was drawn into the audit sample and held for a person instead.
    auto_route: Mapped[str | None] = mapped_column(String(16))
    audited: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # The audit rate in force at intake: the probability that a decision the model took alone reached a person
    # (retraining weights audited decisions by its inverse). None for comments stored before it was recorded.
    audit_rate: Mapped[float | None] = mapped_column(Float)
    # Whether the model's threat head took it for a likely threat at intake (reason `threat_likely`): the queue
    # shows these first. Kept as a column, not read from `reasons`, so that the queue's index can order by it.
    threat_likely: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())

    article: Mapped[Article] = relationship(lazy="joined", innerjoin=True)

    @property
    def article_external_id(self) -> str:
        return self.article.external_id

    @property
    def erased(self) -> bool:
        """Whether this is the tombstone of a comment erased at its author's request (intake never stores "")."""
        return self.text == "" and self.author_id == ERASED


class ModerationAction(Base):
    """One status change of a comment; `moderator` is None when the system decided."""

    __tablename__ = "moderation_actions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    comment_id: Mapped[int] = mapped_column(ForeignKey("comments.id"), index=True)
    moderator: Mapped[str | None] = mapped_column(String(200))
    from_status: Mapped[str | None] = mapped_column(String(16))
    to_status: Mapped[str] = mapped_column(String(16))
    reasons: Mapped[list[str]] = mapped_column(JSON, default=list)
    note: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    # Set on an undo: the decision this row takes back (the comment returns to its state before it).
    reverses_action_id: Mapped[int | None] = mapped_column(ForeignKey("moderation_actions.id"))


class Report(Base):
    """A reader's report of a published comment; one per reader and comment."""

    __tablename__ = "reports"
    __table_args__ = (UniqueConstraint("comment_id", "reporter_id", name="uq_reports_comment_reporter"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    comment_id: Mapped[int] = mapped_column(ForeignKey("comments.id"), index=True)
    reporter_id: Mapped[str] = mapped_column(String(200))
    reason: Mapped[str] = mapped_column(String(32))
    note: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class AuthorBan(Base):
    """A banned author: new comments are rejected with `author_banned` until `until` (None: for good)."""

    __tablename__ = "author_bans"

    author_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    reason: Mapped[str] = mapped_column(Text)
    until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    banned_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class AnonymisedBan(Base):
    """The ban of an author who was erased, kept under a keyed hash of their id (see `ServerKey`).

    Their new comments are still rejected with `author_banned`, though nothing stored names them.
    """

    __tablename__ = "anonymised_bans"

    author_key: Mapped[str] = mapped_column(String(64), primary_key=True)
    until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ServerKey(Base):
    """A secret the service generated for itself once; unlike the secret key it never rotates."""

    __tablename__ = "server_keys"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Term(Base):
    """An entry of the word lists: `banned` terms reject, `suspect` terms hold for review."""

    __tablename__ = "terms"
    __table_args__ = (UniqueConstraint("kind", "term", name="uq_terms_kind_term"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    term: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class IdempotencyKey(Base):
    """An `Idempotency-Key` a client sent with a submission, and the comment it created."""

    __tablename__ = "idempotency_keys"
    __table_args__ = (UniqueConstraint("api_key_id", "key", name="uq_idempotency_client_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    api_key_id: Mapped[int] = mapped_column(Integer)
    key: Mapped[str] = mapped_column(String(200))
    fingerprint: Mapped[str] = mapped_column(String(64))
    comment_id: Mapped[int] = mapped_column(ForeignKey("comments.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)


class FeedbackLabel(Base):
    """A label an integration sent back (Perspective's SuggestCommentScore, as Coral sends it).

    One row per source and comment id: the latest decision wins. The retraining script reads these.
    """

    __tablename__ = "feedback_labels"
    __table_args__ = (UniqueConstraint("source", "external_id", name="uq_feedback_source_external"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    source: Mapped[str] = mapped_column(String(32))
    external_id: Mapped[str] = mapped_column(String(200))
    text: Mapped[str] = mapped_column(Text)
    # SHA-256 of the text as `moderation.text.text_fingerprint` normalises it: erasure finds an author's texts.
    text_key: Mapped[str] = mapped_column(String(64), index=True)
    label: Mapped[int] = mapped_column(Integer)
    attribute: Mapped[str] = mapped_column(String(32))
    client_token: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow, index=True)


class WebhookEvent(Base):
    """A status change to tell the news site about, written in the same transaction as the change."""

    __tablename__ = "webhook_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    event_id: Mapped[str] = mapped_column(String(36), unique=True)
    type: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    fanned_out: Mapped[bool] = mapped_column(Boolean, default=False, index=True)


class WebhookDelivery(Base):
    """One event to one endpoint: attempts, the next try, the last answer (the delivery log)."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        UniqueConstraint("event_id", "url", name="uq_webhook_delivery_event_url"),
        Index("ix_webhook_deliveries_due", "state", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    event_id: Mapped[int] = mapped_column(ForeignKey("webhook_events.id"))
    url: Mapped[str] = mapped_column(String(500))
    state: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    locked_by: Mapped[str | None] = mapped_column(String(100))
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class ApiKey(Base):
    """A bearer token for one client; only the SHA-256 of the token is stored.

    The name is unique: decisions, claims and the audit trail record who acted by key name.
    """

    __tablename__ = "api_keys"
    __table_args__ = (UniqueConstraint("name", name="uq_api_keys_name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    role: Mapped[str] = mapped_column(String(16))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class WebSession(Base):
    """A moderator's sign-in on the pages: the cookie holds a random token, this row only its SHA-256.

    Every page request looks it up, so logout, expiry and a revoked key end it on the server.
    """

    __tablename__ = "web_sessions"
    __table_args__ = (UniqueConstraint("token_hash", name="uq_web_sessions_token_hash"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64))
    key_id: Mapped[int] = mapped_column(ForeignKey("api_keys.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Setting(Base):
    """A setting the site changes at run time (the routing policy), read by every worker within seconds."""

    __tablename__ = "settings"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[dict] = mapped_column(JSON)
    updated_by: Mapped[str] = mapped_column(String(200))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class SettingChange(Base):
    """The audit trail of settings: who changed what, when, from which value to which."""

    __tablename__ = "setting_changes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(64), index=True)
    old_value: Mapped[dict | None] = mapped_column(JSON)
    new_value: Mapped[dict] = mapped_column(JSON)
    changed_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
