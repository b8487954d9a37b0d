"""What a request body asks of the output's shape, as one engine-level :class:`StructuredOutput`.

OpenAI's ``response_format`` (``json_object`` and ``json_schema``), Blaze's ``structured_outputs``
extra (vLLM's name: ``json``, ``regex``, ``choice``, ``grammar`` or ``json_object``) and vLLM's
older ``guided_json`` / ``guided_regex`` / ``guided_choice`` / ``guided_grammar`` all end up here.
A request may ask for one constraint; asking for two is a 400 that names them.
"""

from __future__ import annotations

import json
from typing import Any

from blaze_ai.engines.requests import StructuredOutput
from blaze_ai.errors import BadRequestError
from blaze_ai.server.schemas.chat import ResponseFormat, SamplingFields

#: ``json_object``: any JSON object.
ANY_OBJECT = '{"type": "object"}'


def schema_text(schema: dict[str, Any] | str | None, param: str) -> str:
    """A JSON Schema as compact text, its key order kept (the output follows the schema's property order)."""
    if schema is None:
        return ANY_OBJECT
    if isinstance(schema, str):
        try:
            schema = json.loads(schema)
        except ValueError as exc:
            raise BadRequestError(f"the JSON schema is not valid JSON: {exc}", param=param) from exc
    if not isinstance(schema, dict):
        raise BadRequestError("a JSON schema is a JSON object", param=param)
    return json.dumps(schema, sort_keys=False, separators=(",", ":"))


def from_response_format(fmt: ResponseFormat | None) -> StructuredOutput | None:
    """OpenAI's ``response_format``; ``text`` means no constraint."""
    if fmt is None or fmt.type == "text":
        return None
    if fmt.type == "json_object" or fmt.json_schema is None:
        return StructuredOutput("json", ANY_OBJECT)
    return StructuredOutput("json", schema_text(fmt.json_schema.schema_, "response_format"))


def requested(body: SamplingFields, fmt: ResponseFormat | None = None) -> StructuredOutput | None:
    """The one constraint ``body`` asks for, from whichever field names it; None for free text."""
    found: dict[str, StructuredOutput] = {}
    if (spec := from_response_format(fmt)) is not None:
        found["response_format"] = spec
    extra = body.structured_outputs
    candidates: list[tuple[str, Any, str]] = [
        ("guided_json", body.guided_json, "json"),
        ("guided_regex", body.guided_regex, "regex"),
        ("guided_choice", body.guided_choice, "choice"),
        ("guided_grammar", body.guided_grammar, "grammar"),
    ]
    if extra is not None:
        candidates += [
            ("structured_outputs.json", extra.json_, "json"),
            ("structured_outputs.regex", extra.regex, "regex"),
            ("structured_outputs.choice", extra.choice, "choice"),
            ("structured_outputs.grammar", extra.grammar, "grammar"),
            ("structured_outputs.json_object", ANY_OBJECT if extra.json_object else None, "json"),
        ]
    for name, value, kind in candidates:
        if value is not None:
            found[name] = _spec(kind, value, name)
    if len(found) > 1:
        raise BadRequestError(
            f"ask for one output constraint, not {', '.join(found)}", param=next(iter(found))
        )
    return next(iter(found.values()), None)


def _spec(kind: str, value: Any, param: str) -> StructuredOutput:
    if kind == "json":
        return StructuredOutput("json", schema_text(value, param))
    if kind == "choice":
        return StructuredOutput("choice", json.dumps(list(value)))
    if not value:
        raise BadRequestError(f"{param} is empty", param=param)
    return StructuredOutput("regex" if kind == "regex" else "grammar", str(value))
