"""Credentials masked out of text before it is shown, logged or sent back: the userinfo of a
URL and its query parameters named like a key, token, secret or password."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

# Query parameters whose value is a credential: api-key, access_token, client_secret, sig...
_SECRET_PARAM = re.compile(
    r"([?&][^&=#\s]*(?:key|token|secret|pass|pwd|auth|sig|credential)[^&=#\s]*=)[^&#\s]*",
    re.IGNORECASE,
)


def mask_url(text: str) -> str:
    """A URL (or any text holding URLs) with its credentials replaced by ***: the password of
    `user:password@`, a lone `user@` (a token in the user slot), and query parameters named
    like key, token, secret or password. For broker and base URLs on the page, in the JSON
    API, in logs and in errors."""
    text = _SECRET_PARAM.sub(r"\1***", text)
    # Greedy up to the last "@" before the path: a password may hold an unescaped "@".
    text = re.sub(r"(//[^/@:\s]*:)[^/\s]*@", r"\1***@", text)
    return re.sub(r"//[^/@:\s]+@", "//***@", text)


def has_userinfo(url: str) -> bool:
    """Whether a URL carries `user@` or `user:password@` before its host."""
    return "@" in urlsplit(url.strip()).netloc
