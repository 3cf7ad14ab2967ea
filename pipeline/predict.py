"""Entry point kept for the README and the DVC docs: `python -m pipeline.predict` is pipeline.serve.cli."""

from pipeline.errors import run_cli
from pipeline.serve.cli import main

if __name__ == "__main__":
    run_cli(main)
