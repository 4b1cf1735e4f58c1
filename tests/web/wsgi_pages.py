"""Test-only WSGI entry point: the app plus the pages. Remove once create_app calls `web.init_app`."""

from moderation import create_app, web

app = create_app()
web.init_app(app)
