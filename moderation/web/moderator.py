"""The moderators' pages: sign-in, the queue with keyboard decisions, the dashboard."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    g,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)

from moderation.db import utcnow
from moderation.extensions import classifier, db
from moderation.ml.calibration import CURVE_LEAKS
from moderation.services import audit, web_sessions
from moderation.services import policy as policy_service
from moderation.services import queue as queue_service
from moderation.text import ARTICLE_ID
from moderation.web import dial, present, security

bp = Blueprint("moderator_pages", __name__, url_prefix="/moderation", template_folder="templates",
               static_folder="static")
security.protect(bp)

PAGE_SIZE = 20
PUBLIC_ENDPOINTS = {"moderator_pages.login", "moderator_pages.static", "moderator_pages.not_found"}
QUEUE_LABELS = {"pending": "Wartend", "reported": "Gemeldet"}
SORT_LABELS = {"toxicity": "Riskanteste zuerst", "oldest": "Älteste zuerst"}
DECISION_MESSAGES = {"approve": "Kommentar {id} freigegeben.", "reject": "Kommentar {id} abgelehnt."}
SESSION_ENDED_MESSAGES = {
    web_sessions.KEY_INVALID: "Ihre Sitzung wurde beendet: Der Schlüssel ist nicht mehr gültig.",
    web_sessions.EXPIRED: "Ihre Sitzung ist abgelaufen. Bitte melden Sie sich erneut an.",
    web_sessions.UNKNOWN: "Ihre Sitzung wurde beendet. Bitte melden Sie sich erneut an.",
}


@bp.before_request
def require_moderator() -> Any:
    """Let only a signed-in moderator with a still-active key past; everyone else goes to the sign-in."""
    if request.endpoint in PUBLIC_ENDPOINTS:
        return None
    resumed = security.resume_session()
    if resumed.key is None:
        if security.is_fetch():
            abort(401)
        if resumed.ended:
            flash(SESSION_ENDED_MESSAGES[resumed.ended], "error")
        return redirect(url_for("moderator_pages.login", next=request.full_path.rstrip("?")))
    g.moderator = resumed.key
    return None


@bp.after_request
def no_store(response: Any) -> Any:
    """Keep moderator pages out of shared and back-button caches."""
    response.headers.setdefault("Cache-Control", "no-store")
    return response


def _safe_next(target: str | None) -> str:
    """Return `target` if it is a page of ours, else the queue (no open redirects)."""
    if target:
        parts = urlsplit(target)
        if not parts.scheme and not parts.netloc and parts.path.startswith("/moderation/") and "\\" not in target:
            return target
    return url_for("moderator_pages.queue")


@bp.route("/login", methods=["GET", "POST"])
def login() -> Any:
    """Sign in with a moderator (or admin) API key."""
    if request.method == "GET":
        if security.signed_in_key() is not None:
            return redirect(url_for("moderator_pages.queue"))
        return render_template("web/login.html", next=request.args.get("next", ""))
    token = request.form.get("api_key", "")
    next_url = request.form.get("next", "")
    key = security.key_for_token(token) if token.strip() else None
    if key is None:
        return render_template("web/login.html", next=next_url,
                               error="Unbekannter oder widerrufener Schlüssel."), 401
    if key.role not in security.MODERATOR_ROLES:
        return render_template("web/login.html", next=next_url,
                               error="Dieser Schlüssel gehört zur Website-Anbindung (backend) und darf nicht "
                                     "moderieren. Bitte verwenden Sie einen Moderations-Schlüssel."), 403
    security.sign_in(key)
    return redirect(_safe_next(next_url))


@bp.post("/logout")
def logout() -> Any:
    """Sign out: end the session on the server, so that no copy of the cookie works any more."""
    security.sign_out()
    flash("Sie wurden abgemeldet.", "info")
    return redirect(url_for("moderator_pages.login"))


def _queue_args() -> dict[str, Any]:
    queue = request.args.get("queue", "pending")
    sort = request.args.get("sort", "toxicity")
    article = request.args.get("article", "").strip()
    cursor = request.args.get("cursor") or None
    return {
        "queue": queue if queue in queue_service.QUEUES else "pending",
        "sort": sort if sort in queue_service.SORTS else "toxicity",
        "article_id": article if ARTICLE_ID.match(article) else None,
        "cursor": cursor if cursor and len(cursor) <= 300 else None,
    }


@bp.get("/")
def queue() -> Any:
    """Show a queue of comments waiting for a decision."""
    args = _queue_args()
    page = queue_service.list_queue(db.session, limit=PAGE_SIZE, **args)
    totals = {args["queue"]: page.total}
    for other in queue_service.QUEUES:
        if other not in totals:
            totals[other] = queue_service.list_queue(db.session, queue=other, article_id=args["article_id"],
                                                     sort="oldest", limit=1, cursor=None).total
    filters = {"queue": args["queue"], "sort": args["sort"], "article": args["article_id"] or None}
    return render_template(
        "web/queue.html",
        entries=present.queue_entries(page.items, *classifier.pair(db.session), utcnow()),
        page=page, totals=totals, filters=filters, here=url_for("moderator_pages.queue", **filters),
        article_input=request.args.get("article", ""),
        queue_labels=QUEUE_LABELS, sort_labels=SORT_LABELS,
        invalid_article=bool(request.args.get("article", "").strip()) and args["article_id"] is None,
    )


@bp.post("/comments/<int(max=2147483647):comment_id>/decision")
def decide(comment_id: int) -> Any:
    """Approve or reject a comment as the signed-in moderator (form post or the queue's script)."""
    decision = request.form.get("decision", "")
    if decision not in queue_service.DECISIONS:
        abort(400)
    comment = queue_service.decide(db.session, comment_id, security.current_moderator().name, decision=decision)
    message = DECISION_MESSAGES[decision].format(id=comment.id)
    if security.is_fetch():
        return jsonify({"id": comment.id, "status": comment.status, "message": message})
    flash(message, "success")
    return redirect(_safe_next(request.form.get("next")))


@bp.get("/dashboard")
def dashboard() -> Any:
    """Show queue sizes, the automation rate, how often moderators overruled the model, the leak measured on the
    audit sample beside the budget, and the last 14 days."""
    policy = policy_service.current_policy(db.session, current_app.config).policy
    stats = audit.stats(db.session, decision_threshold=classifier.model.decision_threshold, policy=policy)
    return render_template("web/dashboard.html", stats=stats, chart=present.daily_chart(stats["daily"]),
                           percent=present.percent, verdict=present.budget_verdict)


THRESHOLD_SOURCES = {"calibration": "aus der Richtlinie", "manual": "fest eingestellt", "model": "aus dem Modell"}


@bp.route("/policy", methods=["GET", "POST"])
def policy() -> Any:
    """Show the routing policy and the automation it buys on the serving model; admins change it here."""
    is_admin = g.moderator.role == "admin"
    errors: dict[str, str] = {}
    form: dict[str, str] | None = None
    if request.method == "POST":
        if not is_admin:
            abort(403)
        values, errors = dial.parse_form(request.form)
        if not errors:
            policy_service.update_policy(db.session, values, actor=g.moderator.name, config=current_app.config)
            db.session.commit()
            flash("Die Richtlinie ist gespeichert und gilt in wenigen Sekunden auf allen Servern.", "success")
            return redirect(url_for("moderator_pages.policy"))
        form = {name: request.form.get(name, "") for name in dial.FIELDS}
    serving, stored, settled = classifier.settled(db.session)
    curve = serving.curve(stored.policy, dial.CURVE_GRID)
    marked = [point for point in curve if any(abs(point.max_leak - leak) < 1e-9 for leak in CURVE_LEAKS)]
    page = render_template(
        "web/policy.html", serving=serving, stored=stored, settled=settled, thresholds=settled.thresholds,
        expected=settled.calibration, chart=dial.curve_chart(curve, budget=stored.policy.max_leak), marked=marked,
        is_admin=is_admin, fields=dial.FIELDS, form=form or dial.form_values(stored.policy), errors=errors,
        history=policy_service.policy_history(db.session), sources=THRESHOLD_SOURCES, percent=present.percent,
        score=dial.threshold, local_time=present.local_time, describe=dial.describe,
    )
    return page, 422 if errors else 200


@bp.route("/<path:anything>", methods=["GET", "POST"])
def not_found(anything: str) -> Any:
    """Answer unknown pages under /moderation/ with the German 404 page instead of the API's JSON."""
    abort(404)
