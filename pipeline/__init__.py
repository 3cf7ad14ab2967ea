"""fer-pipeline: reproducible facial-expression recognition as DVC stages."""
