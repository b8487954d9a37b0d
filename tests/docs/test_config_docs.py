"""docs/configuration.md lists every config key and is what scripts/gen_config_docs.py writes."""

from __future__ import annotations

import dataclasses
import importlib.util
import re
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


def load_script(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


GEN = load_script("gen_config_docs")
PAGE = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")


def section(path: str) -> str:
    match = re.search(rf"^## `{re.escape(path)}`\n(.*?)(?=^## |\Z)", PAGE, re.S | re.M)
    assert match, f"docs/configuration.md has no section for {path}"
    return match.group(1)


@pytest.mark.parametrize(("path", "spec"), [(p, s) for p, s, _ in GEN.SECTIONS], ids=lambda v: str(v))
def test_every_field_is_documented(path: str, spec: str) -> None:
    text = section(path)
    for field in dataclasses.fields(GEN.load(spec)):
        if field.init:
            key = (
                GEN.MODEL_KEYS[field.name][0]
                if spec.endswith(":ModelConfig") and field.name in GEN.MODEL_KEYS
                else field.name
            )
            assert f"| `{key}` |" in text, f"{path}.{field.name} is missing from docs/configuration.md"


def test_every_top_level_key_has_a_section() -> None:
    from blaze_ai.config import parse_config
    from blaze_ai.errors import ConfigError

    with pytest.raises(ConfigError) as info:  # the loader's own list of top-level keys
        parse_config({"no_such_key": 1}, env={})
    for key in re.findall(r"\b(\w+)\b", info.value.message.split("known keys are", 1)[1]):
        section("models[]" if key == "models" else key)


def test_page_is_up_to_date() -> None:
    assert GEN.render() == PAGE, "run .venv/bin/python scripts/gen_config_docs.py"


def test_openapi_reference_is_up_to_date() -> None:
    gen = load_script("gen_openapi_docs")
    for path, text in gen.render().items():
        assert path.read_text(encoding="utf-8") == text, "run .venv/bin/python scripts/gen_openapi_docs.py"
