"""What the SSRF tests share: every class of address a sourceUrl or callback must never reach
(each pointing at the canary's port), and the canary, a loopback port that counts every
connection made to it."""

from __future__ import annotations

import socket
import threading

# (URL with the canary's port, the words the refusal names).
REFUSED = [
    ("http://127.0.0.1:{canary}/", "loopback"),
    ("http://[::1]:{canary}/", "loopback"),
    ("http://localhost:{canary}/", "loopback"),
    ("http://2130706433:{canary}/", "loopback"),
    ("http://0x7f.1:{canary}/", "loopback"),
    ("http://10.0.0.1:{canary}/", "private"),
    ("http://192.168.1.20:{canary}/", "private"),
    ("http://[fd00::1]:{canary}/", "private"),
    ("http://169.254.10.1:{canary}/", "link-local"),
    ("http://[fe80::1]:{canary}/", "link-local"),
    ("http://100.64.0.1:{canary}/", "carrier-grade NAT"),
    ("http://0.0.0.0:{canary}/", "unspecified"),
    ("http://224.0.0.1:{canary}/", "multicast"),
    ("http://169.254.169.254:{canary}/latest/meta-data/", "metadata"),
    ("http://[fd00:ec2::254]:{canary}/", "metadata"),
    ("http://[::ffff:127.0.0.1]:{canary}/", "loopback address inside an IPv6"),
    ("http://[2002:7f00:1::]:{canary}/", "loopback address inside an IPv6"),
    ("http://[64:ff9b::7f00:1]:{canary}/", "loopback address inside an IPv6"),
]


class Canary:
    """A loopback port that counts every connection made to it."""

    def __init__(self) -> None:
        self.socket = socket.socket()
        self.socket.bind(("127.0.0.1", 0))
        self.socket.listen(16)
        self.socket.settimeout(0.2)
        self.port: int = self.socket.getsockname()[1]
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                peer, _ = self.socket.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            peer.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.socket.close()
