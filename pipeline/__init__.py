"""fer-pipeline: reproducible facial-expression recognition as DVC stages."""

from pipeline import quiet  # noqa: F401  (first, before any module loads TensorFlow)
