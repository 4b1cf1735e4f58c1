"""Score a text without storing anything."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView

from moderation.api.auth import ADMIN, BACKEND, MODERATOR, Blueprint
from moderation.api.schemas import ScoreIn, ScoreOut
from moderation.extensions import classifier

blp = Blueprint("scoring", __name__, url_prefix="/v1", description="Score a text with the serving model.")


@blp.route("/score")
class ScoreText(MethodView):
    @blp.response(200, ScoreOut)
    @blp.requires(BACKEND, MODERATOR, ADMIN)
    @blp.arguments(ScoreIn())
    def post(self, data: dict[str, Any]) -> dict[str, Any]:
        """Score a text: toxicity, offensive or not, category and the words that drove the score."""
        model = classifier.model
        score = model.score(data["text"])
        return {
            "toxicity": score.toxicity,
            "offensive": score.offensive,
            "category": score.category,
            "highlights": score.highlights,
            "model_version": model.version,
        }
