"""Extensions, created unbound here and bound to the app in `create_app`."""

from moderation.classifier import Classifier
from moderation.db import Database

db = Database()
classifier = Classifier()
