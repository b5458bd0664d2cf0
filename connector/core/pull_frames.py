"""Push&Pull frame parsing: one WebSocket message or long-polling body → messages.

Pure: no I/O. Two framings (digest §8.4, seed L2073–2087):

* server version ≤ 3: ``#!NGINXNMS!#{json}#!NGINXNME!#``, several concatenated. The
  markers are matched tolerantly: the ``!`` around the word may be missing (the seed's
  own sample at L2567 writes ``#!NGINXNMS#``) and the last frame may lack its end
  marker. Stray closing braces after an object (L2077) are ignored.
* version ≥ 4 with ``format=json``: a JSON array of message objects (a single object, or
  several arrays one after another, are accepted too).

The framing is detected from the text, not taken from the server version, so a server
that answers in either form is understood.

Contract: :func:`parse_frames` either returns a :class:`Frames` or raises
:class:`FrameError` — never any other exception. Input that is not text, or text that
is neither framing, is rejected with :class:`FrameError`. Inside a recognised framing, a
frame that is not valid JSON or not a message is skipped and counted in
:attr:`Frames.skipped`; it is never fatal. An empty body (an idle long poll) is zero
messages.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from connector.core.pull_messages import MessageError, PullMessage, parse_message
from connector.errors import ConnectorError

_MARKER = re.compile(r"#!?NGINXNM([SE])!?#")
_DECODER = json.JSONDecoder()


class FrameError(ConnectorError):
    """The input is not a Push&Pull frame at all (not UTF-8 text, or neither framing).

    The message names the problem and the input size, never the content.
    """


@dataclass(frozen=True)
class Frames:
    """The messages found in one input, in order, and how many frames were skipped."""

    messages: tuple[PullMessage, ...]
    skipped: int = 0


def _decode_object(text: str) -> object:
    """One JSON value from ``text``, tolerating trailing ``}`` and whitespace.

    Raises ``ValueError`` when it is not JSON.
    """
    body = text.strip()
    value, end = _DECODER.raw_decode(body)
    rest = body[end:].strip()
    if rest.strip("}").strip():
        raise ValueError("trailing data after the message")
    return value


def _to_messages(values: list[object]) -> Frames:
    messages: list[PullMessage] = []
    skipped = 0
    for value in values:
        try:
            messages.append(parse_message(value))
        except MessageError:
            skipped += 1
    return Frames(tuple(messages), skipped)


def _split_marked(text: str) -> list[str | None]:
    """The bodies between start and end markers; ``None`` for an unusable chunk.

    A frame missing its end marker runs to the next start marker or the end of the text.
    Text outside any start…end pair that is not blank counts as one unusable chunk.
    """
    bodies: list[str | None] = []
    inside: int | None = None
    outside_from = 0
    for match in _MARKER.finditer(text):
        if match.group(1) == "S":
            if inside is not None:  # a start with no end: the open frame ends here
                bodies.append(text[inside : match.start()])
            elif text[outside_from : match.start()].strip():
                bodies.append(None)
            inside = match.end()
        elif inside is not None:
            bodies.append(text[inside : match.start()])
            inside = None
            outside_from = match.end()
        else:  # an end marker with no start
            bodies.append(None)
            outside_from = match.end()
    if inside is not None:
        bodies.append(text[inside:])  # the last frame may lack its end marker (L2567)
    elif text[outside_from:].strip():
        bodies.append(None)
    return bodies


def _parse_marked(text: str) -> Frames:
    values: list[object] = []
    broken = 0
    for body in _split_marked(text):
        if body is None:
            broken += 1
            continue
        try:
            values.append(_decode_object(body))
        except (ValueError, RecursionError):
            broken += 1
    frames = _to_messages(values)
    return Frames(frames.messages, frames.skipped + broken)


def _parse_json(text: str) -> Frames:
    """One JSON array (or object) of messages; several concatenated are accepted too.

    The first value must decode, else the input is rejected; a later value that does not
    decode ends the parse and counts as one skipped frame.
    """
    values: list[object] = []
    broken = 0
    pos = 0
    first = True
    while True:
        while pos < len(text) and (text[pos].isspace() or (not first and text[pos] == "}")):
            pos += 1  # whitespace, and stray closing braces after a value (L2077)
        if pos >= len(text):
            break
        try:
            value, pos = _DECODER.raw_decode(text, pos)
        except (ValueError, RecursionError) as exc:
            if first:
                raise FrameError(f"pull frame of {len(text)} characters is not valid JSON") from exc
            broken += 1
            break
        if isinstance(value, list):
            values.extend(value)
        elif isinstance(value, dict):
            values.append(value)
        elif first:
            raise FrameError("pull frame is JSON but neither an array nor an object")
        else:
            broken += 1
        first = False
    frames = _to_messages(values)
    return Frames(frames.messages, frames.skipped + broken)


def parse_frames(data: bytes | bytearray | str) -> Frames:
    """Parse one WebSocket message or long-polling response body.

    Raises :class:`FrameError` (only) when the input is rejected as a whole.
    """
    if isinstance(data, bytes | bytearray):
        try:
            text = bytes(data).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise FrameError(f"pull frame of {len(data)} bytes is not UTF-8 text") from exc
    elif isinstance(data, str):
        text = data
    else:
        raise FrameError(f"pull frame of type {type(data).__name__} is not text")
    text = text.lstrip("\ufeff")
    if not text.strip():
        return Frames(())
    stripped = text.lstrip()
    marked = _MARKER.search(text) is not None
    if stripped[:1] in {"[", "{"}:
        try:
            return _parse_json(stripped)
        except FrameError:
            if not marked:
                raise
    if marked:
        return _parse_marked(text)
    raise FrameError(f"pull frame of {len(text)} characters has no known framing")
