"""Suite-wide settings: no model hub, ever."""

import os

# Imported early on purpose: on Python 3.11.7 the hypothesis plugin's end-of-run
# summary crashes ("AST constructor recursion depth mismatch") when hypothesis is
# first imported late in a run with failures.
import hypothesis  # noqa: F401

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
