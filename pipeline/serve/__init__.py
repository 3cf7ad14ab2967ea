"""The serving half: detect, align and classify faces in photos and videos with the models the DVC stages make.

`analyse(picture)` is the one call; `Recognizer` keeps a model and a detector loaded; the CLI is
`python -m pipeline.predict`, the web demo `python -m pipeline.app`.
"""

from pipeline.serve.api import Face, Recognizer, Result, analyse

__all__ = ["Face", "Recognizer", "Result", "analyse"]
