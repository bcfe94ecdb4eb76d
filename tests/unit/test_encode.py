"""The fast JSON writer says exactly what Socket.to_dict() says."""

import json
import socket

from halfopen.cli.sockets_out import encode_socket
from halfopen.collect import sockets
from halfopen.collect.diag_replies import decode_tcp_info
from halfopen.model.socket import Owner, Socket


def test_live_sockets_encode_like_to_dict():
    listener = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(listener.getsockname())
    server, _ = listener.accept()
    try:
        found = list(sockets.collect(sockets.Query(tcp_info=True, owners=True)).sockets)
        assert any(s.owners for s in found)
        assert any(s.tcp_info is not None for s in found)
        for s in found:
            assert json.loads(encode_socket(s)) == s.to_dict()
    finally:
        for s in (client, server, listener):
            s.close()


def test_short_tcp_info_and_odd_names_encode_like_to_dict():
    s = Socket(6, 8, "::1", 80, "::ffff:127.0.0.1", 5555, 1, 0, 2, 10, 1, 7, 99,
               2**64 - 1, netns='odd "ns"\\', shutdown=1,
               tcp_info=decode_tcp_info(bytes(160)),
               owners=(Owner(1, 'we"ird\n', 3), Owner(2, "ünï", 4)))
    assert json.loads(encode_socket(s)) == s.to_dict()
    assert "bytes_sent" not in json.loads(encode_socket(s))["tcp_info"]


def test_every_shape_of_line_encodes_like_to_dict():
    """tcp_info and meminfo each present or not, full or short; one owner or none."""
    from halfopen.collect.diag_replies import decode_meminfo

    for ti in (None, decode_tcp_info(bytes(104)), decode_tcp_info(bytes(248))):
        for mi in (None, decode_meminfo(bytes(32)), decode_meminfo(bytes(36))):
            for owners in ((), (Owner(7, 'a"b\\c\t', 9),)):
                for shutdown in (None, 3):
                    s = Socket(4, 1, "10.0.0.1", 1, "10.0.0.2", 2, 0, 0, 0, 0, 0, 0, 5, 6,
                               shutdown=shutdown, tcp_info=ti, meminfo=mi, owners=owners)
                    assert json.loads(encode_socket(s)) == s.to_dict(), (ti, mi, owners)
