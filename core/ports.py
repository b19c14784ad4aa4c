"""Free TCP ports for a Ray cluster's own services (dashboard, GCS, metrics), chosen so that Ray cannot take them.

A port from ``bind(port 0)`` lies in the kernel's ephemeral range, the range Ray's own processes also draw from as
they start (GCS, raylet, agents): a port found free that way can be taken before the service it was meant for
binds it (seen in CI: a dashboard port lost to Ray's own start-up). Ports are therefore taken from below that
range, above Ray's default worker ports (10002-19999), as Ray itself does when it looks upward from 8265 for its
dashboard.
"""

from __future__ import annotations

import socket
from pathlib import Path

# Linux's default ephemeral range starts here; /proc says what this machine uses.
_EPHEMERAL_LOW_DEFAULT = 32768
_EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
# Above Ray's worker ports (ray start's --min-worker-port 10002 .. --max-worker-port 19999 by default).
FIRST_FREE_PORT = 20000


def ephemeral_low() -> int:
    """The first port of this machine's ephemeral range."""
    try:
        return int(_EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return _EPHEMERAL_LOW_DEFAULT


def port_busy(host: str, port: int) -> bool:
    """True when nothing on this machine could bind ``host:port`` now."""
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


def free_ports(n: int, host: str = "127.0.0.1", start: int = FIRST_FREE_PORT) -> list[int]:
    """The first ``n`` ports at or above ``start`` that are free on ``host`` now, below the ephemeral range (a
    ``start`` inside that range looks upward from there). Raises OSError when fewer are free."""
    stop = ephemeral_low() if start < ephemeral_low() else 65536
    found = []
    for port in range(start, stop):
        if not port_busy(host, port):
            found.append(port)
            if len(found) == n:
                return found
    raise OSError(f"only {len(found)} of {n} free TCP ports on {host} in {start}..{stop - 1}")
