"""Names and thresholds of the pipelines, without scikit-learn's import (~2 s of CPU, and more
memory than a retrain under a tight ``ulimit -v`` has before its fit): what a retrain's plan
and `hitl config` compare and show. ``model.classifier`` builds the pipelines they name."""

DEFAULT_PIPELINE = "word_char_auto"
AUTO_LR_MAX_SAMPLES = 2_000
"""``word_char_auto`` fits ``word_char_lr_balanced`` up to this many texts, SGD above."""
