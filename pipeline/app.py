"""Entry point kept for the README: `python -m pipeline.app` is pipeline.serve.app."""

from pipeline.errors import run_cli
from pipeline.serve.app import main

if __name__ == "__main__":
    run_cli(main)
