"""A real OpenSSL verification failure for unit tests, from an in-memory TLS handshake."""

from __future__ import annotations

import ssl

import trustme


def handshake_error(
    server_ca: trustme.CA, client_ca: trustme.CA, name: str, cert_name: str = "broker.example.test"
) -> ssl.SSLError:
    """The client's error when it reaches ``name`` and the server shows ``cert_name``'s
    certificate from ``server_ca``, trusting ``client_ca``."""
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ca.issue_cert(cert_name).configure_cert(server_ctx)
    client_ctx = ssl.create_default_context()
    client_ca.configure_trust(client_ctx)
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    client = client_ctx.wrap_bio(c_in, c_out, server_hostname=name)
    server = server_ctx.wrap_bio(s_in, s_out, server_side=True)
    for _ in range(10):
        for side, outbox, peer_in in ((client, c_out, s_in), (server, s_out, c_in)):
            try:
                side.do_handshake()
            except ssl.SSLWantReadError:
                pass
            except ssl.SSLError as exc:
                if side is client:
                    return exc
                raise
            peer_in.write(outbox.read())
    raise AssertionError("the handshake succeeded")
