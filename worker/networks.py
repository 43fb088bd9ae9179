"""Where a base URL points: this machine or a private network, or the internet.

A server of your own is billed as free by worker.pricing; a provider, or a gateway in front of
one, at list prices."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

LOCAL_SUFFIXES = (".local", ".localhost", ".internal", ".lan", ".home.arpa")


def is_private(base_url: str) -> bool:
    """True for loopback, private-network and link-local addresses (127.*, ::1, 10.*,
    172.16-31.*, 192.168.*, fc00::/7, 169.254.*), `localhost`, names under a local-only
    suffix (`*.local`, `*.internal`, ...) and single-label names such as `ollama` (a
    container's or a machine's name on its own network): none is a public gateway."""
    try:
        host = (urlsplit(base_url.strip()).hostname or "").rstrip(".").lower()
    except ValueError:
        return False
    if not host:
        return False
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host == "localhost" or host.endswith(LOCAL_SUFFIXES) or "." not in host
    if ip.version == 6 and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return ip.is_loopback or ip.is_private or ip.is_link_local or ip.is_unspecified
