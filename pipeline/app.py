"""Entry point kept for the README: `python -m pipeline.app` is pipeline.serve.app."""

from pipeline.serve.app import cli

if __name__ == "__main__":
    cli()
