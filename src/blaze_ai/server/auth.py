"""Optional API keys: ``Authorization: Bearer <key>`` only, compared in constant time.

With no keys configured (``server.api_keys`` and ``server.admin_keys``, or
``BLAZE_API_KEYS`` / ``BLAZE_ADMIN_KEYS``) every route is open. With any key
set, every /v1 route needs an API or admin key and every /admin route needs an
admin key (with no admin keys configured, admin routes are closed: 403).
Health routes never need a key. Keys are never read from the query string and
never logged.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from blaze_ai.errors import AuthenticationError, PermissionDeniedError

# Documents the scheme in /openapi.json; the checks below do the work.
bearer_scheme = HTTPBearer(auto_error=False, description="An API key from server.api_keys or admin_keys.")


def _matches(token: str, keys: tuple[str, ...]) -> bool:
    # Compare against every key (no early exit), bytes so non-ASCII input cannot raise.
    found = False
    for key in keys:
        found |= hmac.compare_digest(token.encode(), key.encode())
    return found


@dataclass(frozen=True, slots=True)
class KeySet:
    """The configured API and admin keys."""

    api_keys: tuple[str, ...] = ()
    admin_keys: tuple[str, ...] = ()

    @property
    def enabled(self) -> bool:
        return bool(self.api_keys or self.admin_keys)

    def is_admin(self, token: str) -> bool:
        return _matches(token, self.admin_keys)

    def is_valid(self, token: str) -> bool:
        return _matches(token, self.api_keys) | self.is_admin(token)


def _token(credentials: HTTPAuthorizationCredentials | None) -> str:
    if credentials is None or not credentials.credentials:
        raise AuthenticationError("missing API key: send 'Authorization: Bearer <key>'")
    return credentials.credentials


async def require_api_key(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)]
) -> str | None:
    """The caller's key (None when keys are off); 401 when missing or wrong."""
    keys: KeySet = request.app.state.keys
    if not keys.enabled:
        return None
    token = _token(credentials)
    if not keys.is_valid(token):
        raise AuthenticationError("invalid API key")
    request.state.api_key = token
    return token


async def require_admin_key(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)]
) -> None:
    """401 without a valid key, 403 when the key is not an admin key."""
    keys: KeySet = request.app.state.keys
    if not keys.enabled:
        return
    token = _token(credentials)
    if keys.is_admin(token):
        return
    if keys.is_valid(token):
        raise PermissionDeniedError("this route needs an admin key (server.admin_keys)")
    raise AuthenticationError("invalid API key")
