from moderation import create_app

app = create_app()
