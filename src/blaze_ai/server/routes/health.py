"""``GET /health/live`` (the process answers) and ``GET /health/ready`` (it can serve).

Neither needs a key, and neither reveals model names, keys or errors.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

router = APIRouter(tags=["health"])


@router.get("/health/live", summary="Liveness: the process answers")
async def live() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/health/ready",
    summary="Readiness: configured models loaded and not draining (503 otherwise)",
    responses={503: {"description": "Loading or draining"}},
)
async def ready(request: Request) -> JSONResponse:
    state = request.app.state
    if state.draining or state.manager.draining:
        return JSONResponse({"status": "draining"}, status_code=503, headers={"Retry-After": "5"})
    if not (state.system or state.manager).is_ready:
        return JSONResponse({"status": "loading"}, status_code=503, headers={"Retry-After": "2"})
    return JSONResponse({"status": "ready"})
