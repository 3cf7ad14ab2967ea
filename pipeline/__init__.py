"""fer-pipeline: reproducible facial-expression recognition as DVC stages."""

import os

# TensorFlow's C++ start-up chatter (CPU feature notices, graph warnings) buries the stage output.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
