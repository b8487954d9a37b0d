"""API keys: Bearer only, constant-time compare, admin keys for admin routes, health stays open."""

from __future__ import annotations

import pytest

from blaze_ai.server.auth import KeySet

from .conftest import MakeClient, chat_body

KEYS = {"api_keys": ("sk-user",), "admin_keys": ("sk-admin",)}


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def test_missing_or_wrong_key_is_401_with_www_authenticate(make_client: MakeClient) -> None:
    client = await make_client(**KEYS)
    for headers in (
        {},
        bearer("sk-wrong"),
        {"Authorization": "Basic c2stdXNlcg=="},
        {"Authorization": "Bearer sk-user\u00e9".encode("latin-1")},
    ):
        response = await client.post("/v1/chat/completions", json=chat_body(), headers=headers)
        assert response.status_code == 401, headers
        assert response.headers["www-authenticate"] == "Bearer"
        assert response.json()["error"]["type"] == "authentication_error"
        assert "sk-" not in response.text


async def test_valid_keys_pass(make_client: MakeClient) -> None:
    client = await make_client(**KEYS)
    for key in ("sk-user", "sk-admin"):
        response = await client.post("/v1/chat/completions", json=chat_body(), headers=bearer(key))
        assert response.status_code == 200
    assert (await client.get("/v1/models", headers=bearer("sk-user"))).status_code == 200


async def test_key_in_query_string_is_not_accepted(make_client: MakeClient) -> None:
    client = await make_client(**KEYS)
    for query in ("api_key=sk-user", "key=sk-user", "access_token=sk-user"):
        assert (await client.get(f"/v1/models?{query}")).status_code == 401


async def test_admin_routes_need_an_admin_key(make_client: MakeClient) -> None:
    client = await make_client(**KEYS)
    assert (await client.get("/admin/engines")).status_code == 401
    forbidden = await client.get("/admin/engines", headers=bearer("sk-user"))
    assert forbidden.status_code == 403 and forbidden.json()["error"]["code"] == "permission_denied"
    assert (await client.get("/admin/engines", headers=bearer("sk-admin"))).status_code == 200


async def test_admin_closed_when_only_user_keys_are_set(make_client: MakeClient) -> None:
    client = await make_client(api_keys=("sk-user",))
    assert (await client.get("/admin/engines", headers=bearer("sk-user"))).status_code == 403


async def test_health_needs_no_key(make_client: MakeClient) -> None:
    client = await make_client(**KEYS)
    assert (await client.get("/health/live")).status_code == 200
    assert (await client.get("/health/ready")).status_code == 200


async def test_no_keys_configured_means_open(client) -> None:  # type: ignore[no-untyped-def]
    assert (await client.get("/v1/models")).status_code == 200
    assert (await client.get("/admin/engines")).status_code == 200


@pytest.mark.parametrize(
    ("token", "valid", "admin"), [("a", True, False), ("b", True, True), ("c", False, False)]
)
def test_keyset(token: str, valid: bool, admin: bool) -> None:
    keys = KeySet(api_keys=("a",), admin_keys=("b",))
    assert keys.is_valid(token) is valid
    assert keys.is_admin(token) is admin
    assert KeySet().enabled is False and keys.enabled is True
