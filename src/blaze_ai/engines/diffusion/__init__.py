"""Image generation on diffusers: :class:`DiffusionConfig`, :class:`DiffusionEngine`, ``SCHEDULERS``.

torch and diffusers are imported only when a pipeline is built or loaded.
"""

from blaze_ai.engines.diffusion.config import DiffusionConfig
from blaze_ai.engines.diffusion.engine import DiffusionEngine
from blaze_ai.engines.diffusion.schedulers import SCHEDULERS

__all__ = ["SCHEDULERS", "DiffusionConfig", "DiffusionEngine"]
