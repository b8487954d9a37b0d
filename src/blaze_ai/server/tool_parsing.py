"""Reading tool calls back out of generated text, whole or as it streams.

The format is Blaze's one tool-call text format (see :mod:`blaze_ai.server.tools`): Hermes-style
``<tool_call>`` blocks holding ``{"name": ..., "arguments": {...}}``. :func:`parse_tool_calls`
reads a finished output; :class:`ToolCallStream` reads it piece by piece and yields OpenAI-shaped
events (content text, a call's start, its argument fragments) that describe the same result
whatever the chunking.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import Any

OPEN = "<tool_call>"
CLOSE = "</tool_call>"
_WS = " \t\n\r"
_ARGUMENT_KEYS = ("arguments", "parameters")


@dataclass(frozen=True, slots=True)
class ToolCall:
    """One call the model made: ``arguments`` is a JSON object as compact text."""

    id: str
    name: str
    arguments: str


@dataclass(slots=True)
class ParsedOutput:
    """A generated text split into its text outside calls (stripped; None if empty) and its calls."""

    content: str | None
    calls: list[ToolCall]


@dataclass(frozen=True, slots=True)
class ContentDelta:
    """Text outside calls. ``abandoned`` is the index of a started call whose block turned out
    malformed: this is that block's text, and the call's events so far are void."""

    text: str
    abandoned: int | None = None


@dataclass(frozen=True, slots=True)
class CallStart:
    """Call number ``index`` begins; its arguments follow as ArgumentsDelta events."""

    index: int
    id: str
    name: str


@dataclass(frozen=True, slots=True)
class ArgumentsDelta:
    """More of call ``index``'s arguments JSON (concatenated, the whole arguments text)."""

    index: int
    text: str


StreamEvent = ContentDelta | CallStart | ArgumentsDelta


def new_call_id() -> str:
    """An OpenAI-style tool call id: ``call_`` and 24 random hex digits."""
    return "call_" + secrets.token_hex(12)


def parse_tool_calls(text: str, names: AbstractSet[str]) -> ParsedOutput:
    """The calls of functions in ``names`` in a finished output, and the text around them.

    Reads ``<tool_call>`` blocks (the closing tag may be missing at the end; any whitespace
    around the JSON; ``"parameters"`` for ``"arguments"``; arguments as an object or as a JSON
    string of one), or a whole output that is one bare call object or a JSON list of them (when
    every name is known). Unknown names and malformed JSON stay in ``content``; never raises.
    """
    stream = ToolCallStream(names)
    return collect([*stream.feed(text), *stream.close()])


def collect(events: list[StreamEvent]) -> ParsedOutput:
    """The output that a list of stream events describes (abandoned calls dropped)."""
    content: list[str] = []
    starts: dict[int, CallStart] = {}
    arguments: dict[int, list[str]] = {}
    for event in events:
        if isinstance(event, ContentDelta):
            content.append(event.text)
            if event.abandoned is not None:
                starts.pop(event.abandoned, None)
        elif isinstance(event, CallStart):
            starts[event.index] = event
            arguments[event.index] = []
        else:
            arguments[event.index].append(event.text)
    calls = [ToolCall(s.id, s.name, "".join(arguments[i])) for i, s in sorted(starts.items())]
    return ParsedOutput("".join(content) or None, calls)


def _loads(text: str) -> Any:
    """``json.loads`` that also refuses NaN and Infinity (ValueError)."""
    return json.loads(text, parse_constant=_refuse)


def _refuse(constant: str) -> Any:
    raise ValueError(f"{constant} is not JSON")


def _compact(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _call_of(value: Any, names: frozenset[str], *, bare: bool) -> tuple[str, str] | None:
    """(name, compact arguments) of a decoded call object, or None when it is not a call.

    A bare call (a whole output without tags) must also have its arguments key.
    """
    if not isinstance(value, dict) or value.get("name") not in names:
        return None
    key = next((k for k in _ARGUMENT_KEYS if k in value), None)
    if key is None and bare:
        return None
    arguments = value.get(key) if key else None
    if arguments is None or (isinstance(arguments, str) and not arguments.strip()):
        arguments = {}
    elif isinstance(arguments, str):
        try:
            arguments = _loads(arguments)
        except ValueError:
            return None
    return (value["name"], _compact(arguments)) if isinstance(arguments, dict) else None


class _JsonLexer:
    """Tracks strings and bracket nesting through JSON text, one character at a time."""

    __slots__ = ("escape", "in_string", "stack")

    def __init__(self) -> None:
        self.stack: list[str] = []
        self.in_string = False
        self.escape = False

    def step(self, c: str) -> bool:
        """Advance over ``c``; False when it closes a bracket that is not the open one."""
        if self.in_string:
            if self.escape:
                self.escape = False
            elif c == "\\":
                self.escape = True
            elif c == '"':
                self.in_string = False
        elif c == '"':
            self.in_string = True
        elif c in "{[":
            self.stack.append("}" if c == "{" else "]")
        elif c in "}]":
            return bool(self.stack) and self.stack.pop() == c
        return True

    @property
    def inside(self) -> bool:
        """Whether the text so far is an unfinished string, object or array."""
        return self.in_string or bool(self.stack)


class _Block:
    """One ``<tool_call>`` block as it arrives: the call object read key by key.

    ``feed`` says None while the block goes on, ``"done"`` after a call, ``"failed"`` for a
    malformed block; then the text after the block starts at ``raw[resume:]``. The call starts
    (``started``) as soon as its known name is followed by an arguments object, whose text, less
    whitespace outside strings, then grows in ``arguments`` character by character; a call
    written otherwise (arguments first, or as a string) starts complete at the end of its object.
    """

    def __init__(self, names: frozenset[str]) -> None:
        self.names = names
        self.raw = ""  # the block's text after <tool_call>
        self.resume = 0
        self.name: str | None = None
        self.started = False
        self.arguments: list[str] = []
        self._state: Callable[[int, str], str | None] = self._open
        self._lexer = _JsonLexer()  # over the current key or value
        self._start = 0  # where the call object starts in raw
        self._mark = 0  # where the current key or value starts in raw
        self._key: Any = None
        self._streaming = False  # inside the arguments object of a started call
        self._tail: int | None = None  # where the text after the call object starts in raw

    def feed(self, text: str) -> str | None:
        """Read more of the block; the outcome once it is decided."""
        base = len(self.raw)
        self.raw += text
        for i in range(base, len(self.raw)):
            outcome = self._state(i, self.raw[i])
            if outcome:
                return outcome
        return None

    def finish(self) -> str:
        """The outcome at the end of the text: a call needs its object, not its closing tag."""
        if self._tail is None:
            return self._fail(len(self.raw))
        tail = self.raw[self._tail :].lstrip(_WS)
        # A cut-off closing tag belongs to the block; other text after the object does not.
        self.resume = len(self.raw) if not tail or CLOSE.startswith(tail) else self._tail
        return "done"

    def _fail(self, resume: int) -> str:
        self.resume = resume
        return "failed"

    def _open(self, i: int, c: str) -> str | None:
        if c in _WS:
            return None
        if c != "{":
            return self._fail(i)
        self._start = i
        self._state = self._key_or_end
        return None

    def _key_or_end(self, i: int, c: str) -> str | None:
        if c in _WS:
            return None
        if c == "}":
            return self._end(i)
        if c != '"':
            return self._fail(i)
        self._mark, self._lexer = i, _JsonLexer()
        self._lexer.step(c)
        self._state = self._key_text
        return None

    def _key_text(self, i: int, c: str) -> str | None:
        self._lexer.step(c)
        if self._lexer.in_string:
            return None
        try:
            self._key = _loads(self.raw[self._mark : i + 1])
        except ValueError:
            return self._fail(i + 1)
        self._state = self._colon
        return None

    def _colon(self, i: int, c: str) -> str | None:
        if c in _WS:
            return None
        if c != ":":
            return self._fail(i)
        self._state = self._value
        return None

    def _value(self, i: int, c: str) -> str | None:
        if c in _WS:
            return None
        if c in ",:}]":
            return self._fail(i)
        self._mark, self._lexer = i, _JsonLexer()
        if c not in '"{[':
            self._state = self._scalar
            return None
        self._state = self._nested
        if c == "{" and self._key in _ARGUMENT_KEYS and self.name is not None and not self.started:
            self.started = self._streaming = True
        return self._nested(i, c)

    def _nested(self, i: int, c: str) -> str | None:
        in_string = self._lexer.in_string
        if not self._lexer.step(c):
            return self._fail(i)
        if self._streaming and (in_string or c not in _WS):
            self.arguments.append(c)
        return None if self._lexer.inside else self._value_end(i + 1)

    def _scalar(self, i: int, c: str) -> str | None:
        if c not in _WS and c not in ",}]":
            return None
        return self._value_end(i) or self._after_value(i, c)

    def _value_end(self, end: int) -> str | None:
        """The value ``raw[mark:end]`` is complete: a name must be a known one."""
        self._streaming = False
        self._state = self._after_value
        if self._key != "name" or self.name is not None:
            return None
        try:
            name = _loads(self.raw[self._mark : end])
        except ValueError:
            return self._fail(end)
        if not isinstance(name, str) or name not in self.names:
            return self._fail(end)
        self.name = name
        return None

    def _after_value(self, i: int, c: str) -> str | None:
        if c in _WS:
            return None
        if c == ",":
            self._state = self._key_or_end
            return None
        return self._end(i) if c == "}" else self._fail(i)

    def _end(self, i: int) -> str | None:
        """The call object closes at ``raw[i]``: check it whole."""
        try:
            call = _call_of(_loads(self.raw[self._start : i + 1]), self.names, bare=False)
        except ValueError:
            call = None
        if call is None or (self.started and call[0] != self.name):
            return self._fail(i + 1)
        if not self.started:
            self.name, self.arguments, self.started = call[0], [call[1]], True
        self._tail = i + 1
        self._state = self._after
        return None

    def _after(self, i: int, c: str) -> str | None:
        """After the object: whitespace, then the closing tag (or anything else, which is text)."""
        assert self._tail is not None
        tail = self.raw[self._tail : i + 1].lstrip(_WS)
        if tail == CLOSE:
            self.resume = i + 1
            return "done"
        if not tail or (len(tail) < len(CLOSE) and CLOSE.startswith(tail)):
            return None
        self.resume = self._tail
        return "done"


class _Content:
    """Text outside calls, stripped as a whole: leading whitespace dropped, trailing held back."""

    def __init__(self) -> None:
        self._started = False
        self._spaces = ""

    def add(self, text: str) -> str:
        """The part of ``text`` that is certainly content now."""
        if not self._started:
            text = text.lstrip()
            if not text:
                return ""
            self._started = True
        body = text.rstrip()
        if not body:
            self._spaces += text
            return ""
        out, self._spaces = self._spaces + body, text[len(body) :]
        return out


class ToolCallStream:
    """Splits a streamed output into content text and calls, as ``parse_tool_calls`` would.

    ``feed`` each new piece of text and ``close`` at the end; both return events: ContentDelta
    text, and for each call a CallStart (once its known name is followed by its arguments) then
    ArgumentsDelta pieces of its arguments as they are generated (whitespace outside strings
    dropped). Held back until decided: text that may be the start of ``<tool_call>``, what follows
    the arguments (the object's ``}``, ``</tool_call>``), trailing whitespace, and a whole output
    that starts with ``{`` or ``[`` (it may be a bare call) until it cannot be one.

    Whatever the chunking, the events describe ``parse_tool_calls`` of the whole text (see
    ``collect``), with one exception that a stream cannot avoid: a started call whose block then
    turns out malformed (cut off by ``max_tokens`` or a stop string, or invalid JSON, which the
    grammar rules out) is sent again as content, ContentDelta(abandoned=its index), at ``close``
    or when noticed; a client has already seen its start.
    """

    def __init__(self, names: AbstractSet[str]) -> None:
        self._names = frozenset(names)
        self._mode = "start"  # start (leading whitespace) | bare | text | block
        self._events: list[StreamEvent] = []
        self._content = _Content()
        self._pending = ""  # text mode: what may be the beginning of <tool_call>
        self._bare = ""  # bare mode: the output so far
        self._bare_lexer = _JsonLexer()
        self._block: _Block | None = None
        self._index = -1  # the index of the last call started
        self._announced = False  # whether the block's call was started
        self._abandoned = 0  # how many started calls turned out malformed
        self._sent = 0  # how many of the block's argument pieces were sent

    @property
    def called(self) -> bool:
        """Whether a call was started (and not abandoned) so far."""
        return self._index + 1 > self._abandoned

    def feed(self, text: str) -> list[StreamEvent]:
        """The events that ``text``, the next piece of output, decides."""
        self._events = []
        self._consume(text)
        return self._events

    def close(self) -> list[StreamEvent]:
        """The events that the end of the output decides."""
        self._events = []
        if self._mode == "bare" and not self._bare_calls():
            self._mode, text, self._bare = "text", self._bare, ""
            self._consume(text)
        while self._block is not None:
            self._consume(self._leave_block(self._block.finish()))
        if self._mode == "text":
            self._say(self._pending)
            self._pending = ""
        return self._events

    def _consume(self, text: str) -> None:
        while text:
            if self._mode == "start":
                text = text.lstrip(_WS)
                self._mode = "bare" if text[:1] in ("{", "[") else "text"
            elif self._mode == "bare":
                text = self._feed_bare(text)
            elif self._mode == "text":
                text = self._feed_text(text)
            else:
                text = self._feed_block(text)

    def _feed_bare(self, text: str) -> str:
        """Hold a whole output that may be one JSON call (or list); what follows when it cannot."""
        lexer = self._bare_lexer
        for i, c in enumerate(text):
            complete = bool(self._bare or i) and not lexer.inside
            if (c not in _WS) if complete else not lexer.step(c):
                self._mode, rest, self._bare = "text", self._bare + text, ""
                return rest
        self._bare += text
        return ""

    def _bare_calls(self) -> bool:
        """At the end: announce the held output's calls when it is nothing but calls."""
        try:
            value = _loads(self._bare)
        except ValueError:
            return False
        items = value if isinstance(value, list) else [value]
        calls = [_call_of(item, self._names, bare=True) for item in items]
        if not calls or any(call is None for call in calls):
            return False
        for call in calls:
            assert call is not None
            self._index += 1
            self._events += [
                CallStart(self._index, new_call_id(), call[0]),
                ArgumentsDelta(self._index, call[1]),
            ]
        self._mode = "done"
        return True

    def _feed_text(self, text: str) -> str:
        buffer = self._pending + text
        at = buffer.find(OPEN)
        if at >= 0:
            self._say(buffer[:at])
            self._pending, self._mode = "", "block"
            self._block, self._sent, self._announced = _Block(self._names), 0, False
            return buffer[at + len(OPEN) :]
        keep = next(
            (k for k in range(min(len(OPEN) - 1, len(buffer)), 0, -1) if buffer.endswith(OPEN[:k])), 0
        )
        self._say(buffer[: len(buffer) - keep])
        self._pending = buffer[len(buffer) - keep :]
        return ""

    def _feed_block(self, text: str) -> str:
        assert self._block is not None
        outcome = self._block.feed(text)
        if outcome is None:
            self._announce(self._block)
            return ""
        return self._leave_block(outcome)

    def _leave_block(self, outcome: str) -> str:
        """Send what the block decided; the text after it."""
        block = self._block
        assert block is not None
        self._announce(block)
        if outcome == "failed":
            self._abandoned += block.started
            self._say(OPEN + block.raw[: block.resume], abandoned=self._index if block.started else None)
        self._block, self._mode = None, "text"
        return block.raw[block.resume :]

    def _announce(self, block: _Block) -> None:
        """Send the block's call start and its new argument text."""
        if block.started and not self._announced:
            assert block.name is not None
            self._index, self._announced = self._index + 1, True
            self._events.append(CallStart(self._index, new_call_id(), block.name))
        if len(block.arguments) > self._sent:
            self._events.append(ArgumentsDelta(self._index, "".join(block.arguments[self._sent :])))
            self._sent = len(block.arguments)

    def _say(self, text: str, abandoned: int | None = None) -> None:
        out = self._content.add(text)
        if out or abandoned is not None:
            self._events.append(ContentDelta(out, abandoned))
