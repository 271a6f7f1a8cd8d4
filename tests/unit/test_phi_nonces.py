"""AES-GCM nonces drawn in bulk: each handed out once, in threads and across a fork."""

import os
import threading

from spakinect_pipeline.phi.crypto import NONCE_BYTES, _b64decode, keyring_from, new_key_entry
from spakinect_pipeline.phi.nonces import NoncePool


class Draws:
    """``os.urandom``, counting the calls."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, size: int) -> bytes:
        self.calls += 1
        return os.urandom(size)


def test_nonces_are_drawn_in_bulk_each_the_right_size_and_never_repeated():
    draws = Draws()
    pool = NoncePool(NONCE_BYTES, draw=8, urandom=draws)
    nonces = [pool.take() for _ in range(20)]
    assert {len(n) for n in nonces} == {NONCE_BYTES}
    assert len(set(nonces)) == 20
    assert draws.calls == 3  # 8 + 8 + 4 of the third draw's 8


def test_threads_never_share_a_nonce():
    pool = NoncePool(NONCE_BYTES, draw=16)
    taken: list[list[bytes]] = [[] for _ in range(4)]

    def take(into: list[bytes]) -> None:
        into.extend(pool.take() for _ in range(2000))

    threads = [threading.Thread(target=take, args=(into,)) for into in taken]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    everything = [n for into in taken for n in into]
    assert len(set(everything)) == len(everything) == 8000


def test_a_forked_child_does_not_reuse_the_parents_drawn_nonces():
    pool = NoncePool(NONCE_BYTES, draw=64)
    pool.take()  # the pool now holds 63 drawn nonces
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its first nonces, to the parent
        os.close(read_end)
        os.write(write_end, b"".join(pool.take() for _ in range(8)))
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as reader:
        child = reader.read()
    os.waitpid(pid, 0)
    parent = b"".join(pool.take() for _ in range(8))
    assert len(child) == 8 * NONCE_BYTES
    assert child != parent


def test_sealed_fields_carry_distinct_nonces_from_the_pool():
    ring = keyring_from(new_key_entry("k1"), new_key_entry().split(":", 1)[1])
    sealed = [ring.encrypt("Jane", "ctx") for _ in range(600)]  # more than one draw
    nonces = {_b64decode(s.split(":", 2)[2])[:NONCE_BYTES] for s in sealed}
    assert len(nonces) == 600
    assert {ring.decrypt(s, "ctx") for s in sealed} == {"Jane"}
