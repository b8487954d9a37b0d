"""The HTTP gateway: an OpenAI-compatible API in front of the engine manager.

``create_app(config, manager)`` builds the FastAPI app; ``blaze serve`` runs it
on uvicorn. See ``docs/api.md``.
"""

from blaze_ai.server.app import create_app
from blaze_ai.server.dispatch import Dispatch, ManagerDispatch, RequestContext

__all__ = ["Dispatch", "ManagerDispatch", "RequestContext", "create_app"]
