"""Keep tokens and secrets out of URLs, parameters, log lines and error messages.

Bitrix24 carries the access token as the ``auth`` parameter, and the OAuth server takes
``client_secret`` and ``refresh_token`` as parameters, so anything that prints a request
must pass it through here first. Three tools:

* :func:`redact_url` — mask the values of secret query parameters in a URL;
* :func:`redact_params` — the same for a (nested) parameter mapping;
* :func:`redact_text` — mask secret ``name=value`` / ``"name": "value"`` pairs in free
  text, plus any known secret strings passed in.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

__all__ = [
    "MASK",
    "SECRET_NAMES",
    "is_secret_name",
    "redact_params",
    "redact_text",
    "redact_url",
]

MASK = "***"

SECRET_NAMES = frozenset(
    {
        "auth",
        "access_token",
        "refresh_token",
        "client_secret",
        "code",
        "application_token",
        "password",
        "secret",
        "token",
    }
)

# ``code`` (the OAuth authorization code) is masked in URLs and parameters, but not in
# free text, where "code=..." usually names an error code.
_TEXT_NAMES = SECRET_NAMES - {"code"}
_NAME_ALT = "|".join(sorted((re.escape(n) for n in _TEXT_NAMES), key=len, reverse=True))
# name=value (query strings, form bodies) and "name": "value" / 'name': 'value' (JSON, reprs);
# the name may be wrapped in brackets (auth[access_token]=...).
_PAIR = re.compile(
    rf"(?P<head>(?:^|(?<=[?&\s\[\]\"',;{{(]))(?:[\w\[\]]*\[)?(?:{_NAME_ALT})\]?=[\"']?)(?P<value>[^&\s\"',;}})]+)",
    re.IGNORECASE,
)
_QUOTED = re.compile(
    rf"(?P<head>[\"'](?:{_NAME_ALT})[\"']\s*:\s*[\"'])(?P<value>[^\"']+)",
    re.IGNORECASE,
)
_MIN_SECRET_LENGTH = 6


def is_secret_name(name: str) -> bool:
    """``auth``, ``refresh_token``, ``auth[access_token]``… (case-insensitive)."""
    lowered = name.lower()
    last = lowered.rstrip("]").rsplit("[", 1)[-1]
    return lowered in SECRET_NAMES or last in SECRET_NAMES


def redact_url(url: str) -> str:
    """``https://p/rest/x?auth=abc&id=1`` → ``https://p/rest/x?auth=***&id=1``.

    A password in the authority (``user:pw@host``) is masked too.
    """
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, host = netloc.rpartition("@")
        if ":" in userinfo:
            netloc = f"{userinfo.split(':', 1)[0]}:{MASK}@{host}"
    if not parts.query:
        return urlunsplit(parts._replace(netloc=netloc))
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    query = urlencode([(k, MASK if is_secret_name(k) else v) for k, v in pairs], safe="[]*")
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def redact_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``params`` with every secret value (at any depth) replaced by ``***``."""
    return {str(k): _redact_value(str(k), v) for k, v in params.items()}


def _redact_value(name: str, value: Any) -> Any:
    if is_secret_name(name) and not isinstance(value, (Mapping, list, tuple)):
        return MASK
    if isinstance(value, Mapping):
        if is_secret_name(name):
            return {str(k): MASK for k in value}
        return redact_params(value)
    if isinstance(value, (list, tuple)):
        return [_redact_value(name, item) for item in value]
    if isinstance(value, str):
        return redact_text(value)
    return value


def redact_text(text: str, secrets: Iterable[str | None] = ()) -> str:
    """Mask secret pairs in ``text``, then every occurrence of a known secret string.

    Secrets shorter than six characters are not searched for (they would mask ordinary
    words); the pair patterns still catch them.
    """
    text = _PAIR.sub(lambda m: m.group("head") + MASK, text)
    text = _QUOTED.sub(lambda m: m.group("head") + MASK, text)
    for secret in secrets:
        if secret and len(secret) >= _MIN_SECRET_LENGTH:
            text = text.replace(secret, MASK)
    return text
