from moderation.cli import cli

cli(prog_name="python -m moderation")
