"""A network partition between the ingress and Kafka, with ``ip netns`` (root only).

The ingress runs in a network namespace of its own with two veth links to the
host: the vendor reaches it over one, it reaches Kafka (a broker listener on
the host end of the other) over the second. ``cut`` takes the host end of the
Kafka link down: every packet the ingress sends there is dropped without a
word (the neighbour entry is permanent, so not even an ARP failure tells it),
and Kafka's answers have no route back. The vendor's link stays up, so the
ingress still answers, which is what the scenario measures.

This kernel has no ``sch_netem`` (no ``tc ... netem loss``), so a link down on
the far end is the silent drop available.
"""

from __future__ import annotations

import os
import random
import subprocess
from collections.abc import Sequence


def _ip(*args: str) -> str:
    result = subprocess.run(["ip", *args], check=True, capture_output=True, text=True)
    return result.stdout


def netns_available() -> bool:
    """Whether this host lets us create a namespace (root, ``ip`` installed, kernel allows)."""
    name = f"spk-probe-{os.getpid()}"
    try:
        _ip("netns", "add", name)
    except (OSError, subprocess.CalledProcessError):
        return False
    _ip("netns", "del", name)
    return True


class Partition:
    """The ingress's namespace and its two links; :meth:`delete` removes all of it."""

    def __init__(self) -> None:
        tag = f"{os.getpid() % 10000}{random.randrange(100)}"  # unique among parallel runs
        self.name = f"spk-chaos-{tag}"
        self.vendor_host = f"spkv{tag}"
        self.kafka_host = f"spkk{tag}"
        octet = random.randrange(1, 250)
        self.vendor_net = f"10.253.{octet}"  # /30 each: .1 on the host, .2 in the namespace
        self.kafka_net = f"10.254.{octet}"
        self.ingress_ip = f"{self.vendor_net}.2"
        self.kafka_ip = f"{self.kafka_net}.1"

    def create(self) -> None:
        _ip("netns", "add", self.name)
        try:
            _ip("-n", self.name, "link", "set", "lo", "up")
            for host_end, net in (
                (self.vendor_host, self.vendor_net),
                (self.kafka_host, self.kafka_net),
            ):
                inside = host_end + "n"
                _ip(
                    "link",
                    "add",
                    host_end,
                    "type",
                    "veth",
                    "peer",
                    "name",
                    inside,
                    "netns",
                    self.name,
                )
                _ip("addr", "add", f"{net}.1/30", "dev", host_end)
                _ip("link", "set", host_end, "up")
                _ip("-n", self.name, "addr", "add", f"{net}.2/30", "dev", inside)
                _ip("-n", self.name, "link", "set", inside, "up")
            mac = _ip("-brief", "link", "show", self.kafka_host).split()[2]
            _ip("-n", self.name, "neigh", "replace", self.kafka_ip, "lladdr", mac,
                "dev", self.kafka_host + "n", "nud", "permanent")  # fmt: skip
        except BaseException:
            self.delete()
            raise

    def wrap(self, argv: Sequence[str]) -> list[str]:
        """``argv`` run inside the namespace."""
        return ["ip", "netns", "exec", self.name, *argv]

    def cut(self) -> None:
        _ip("link", "set", self.kafka_host, "down")

    def restore(self) -> None:
        _ip("link", "set", self.kafka_host, "up")

    def delete(self) -> None:
        """Remove the namespace (its veth ends go with it, and their host peers)."""
        for link in (self.vendor_host, self.kafka_host):
            subprocess.run(["ip", "link", "del", link], check=False, capture_output=True)
        subprocess.run(["ip", "netns", "del", self.name], check=False, capture_output=True)
