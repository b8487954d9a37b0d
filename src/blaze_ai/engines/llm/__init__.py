"""LLM engine: load causal language models and serve them with continuous batching.

``LLMConfig`` says what to load and how much to admit, ``load_model`` turns it into a
``LoadedModel``, and ``LLMEngine`` serves it. ``ModelCache`` and ``DynamicBatcher`` live in
``blaze_ai`` (every engine kind shares them) and are re-exported here for convenience.
"""

from blaze_ai.batching import DynamicBatcher
from blaze_ai.engines.llm.config import LLMConfig
from blaze_ai.engines.llm.engine import LLMEngine
from blaze_ai.engines.llm.loading import LoadedModel, load_model
from blaze_ai.model_cache import ModelCache

__all__ = ["DynamicBatcher", "LLMConfig", "LLMEngine", "LoadedModel", "ModelCache", "load_model"]
