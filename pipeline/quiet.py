"""Import first in every entry point: keeps TensorFlow's C++, absl and oneDNN start-up lines off the console.

The variables must be set before TensorFlow loads; a user's own setting wins.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_DETERMINISTIC_OPS", "1")  # same seed → same weights on the CPU (TensorFlow backend)
