"""core/ports.py: free ports for Ray's own services, from below the kernel's ephemeral range."""

from __future__ import annotations

import socket

import pytest

from core.ports import FIRST_FREE_PORT, ephemeral_low, free_ports


def test_free_ports_are_distinct_bindable_below_the_ephemeral_range_and_skip_a_busy_one():
    busy = free_ports(1)[0]
    with socket.socket() as held:
        held.bind(("127.0.0.1", busy))
        held.listen()
        ports = free_ports(3, start=busy)
        assert busy not in ports and len(set(ports)) == 3
        assert all(FIRST_FREE_PORT <= p < ephemeral_low() for p in ports)
        for p in ports:  # each one binds now
            with socket.socket() as s:
                s.bind(("127.0.0.1", p))


def test_ephemeral_range_read_from_the_kernel():
    with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
        assert ephemeral_low() == int(f.read().split()[0])


def test_too_few_free_ports_is_an_error_that_says_so():
    with socket.socket() as held:
        try:
            held.bind(("127.0.0.1", 65535))  # the last port, held (or already busy)
        except OSError:
            pass
        with pytest.raises(OSError, match="only 0 of 1 free TCP ports"):
            free_ports(1, start=65535)
