"""Importing the Raft adapter leaves the socket module as the platform made it."""

import socket


def test_importing_the_raft_group_keeps_inet_ntop():
    import x0node.coord.group  # noqa: F401

    assert socket.inet_ntop(socket.AF_INET6, bytes(15) + b"\x01") == "::1"
    assert socket.inet_ntop(socket.AF_INET, b"\x7f\x00\x00\x01") == "127.0.0.1"
