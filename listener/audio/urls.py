"""Stream URLs as text: which ones are network streams, and how to show one safely.

Kept apart from the network source (no numpy, no PyAV) because the config and the
CLI need it too: the config to accept a URL as a source, check-config and every log
line to print it with its credentials masked (:func:`mask_url`), like passwords.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

#: URL schemes FFmpeg opens as a network stream (an RTP ``.sdp`` file is given as a path)
SCHEMES = ("rtsp", "rtsps", "rtmp", "rtmps", "http", "https", "udp", "srt", "rtp", "tcp")
#: query parameters whose values are secrets (tokens, keys, signatures)
_SECRET_QUERY = re.compile(r"(?i)((?:pass|pwd|token|key|secret|auth|sig)[^=&]*=)[^&#]*")


def scheme_of(url: str) -> str:
    """The URL's scheme in lower case ('' for a plain path)."""
    return url.split("://", 1)[0].lower() if "://" in url else ""


def is_network_url(text: str) -> bool:
    """A URL with a scheme FFmpeg streams from, or an RTP session description file."""
    scheme = scheme_of(text)
    return scheme in SCHEMES or (not scheme and text.lower().endswith(".sdp"))


def mask_url(url: str) -> str:
    """``url`` with its password (and secret query values) as ``***``:
    ``rtsp://admin:hunter2@cam/stream`` -> ``rtsp://admin:***@cam/stream``. A user name
    without a password is masked too (some servers put the token there)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "***"
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        user = userinfo.split(":", 1)[0] + ":" if ":" in userinfo else ""
        netloc = f"{user}***@{host}"
    query = _SECRET_QUERY.sub(r"\1***", parts.query)
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def scrub(text: str, url: str) -> str:
    """``text`` (an error message that may quote the URL) with the URL masked."""
    text = text.replace(url, mask_url(url))
    try:
        password = urlsplit(url).password
    except ValueError:
        password = None
    return text.replace(password, "***") if password else text
