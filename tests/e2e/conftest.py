"""End-to-end fixtures beyond the shared ``gateway`` / ``blaze_servers`` (``tests/conftest.py``)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

TINY_LLM = """
server:
  host: 127.0.0.1
  api_keys: [{api_key}]
  admin_keys: [{admin_key}]
models:
  - name: tiny
    kind: llm
    llm: {{source: "builtin:tiny-llama", max_batch_size: 2, max_queued_requests: 2}}
"""


@pytest.fixture(scope="session")
def tiny_llm_yaml() -> Callable[[str, str], str]:
    """A config serving ``builtin:tiny-llama`` as ``tiny`` with the given API and admin key."""
    return lambda api_key, admin_key: TINY_LLM.format(api_key=api_key, admin_key=admin_key)
