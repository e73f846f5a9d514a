"""A small authoritative DNS server on 127.0.0.1 (UDP, a thread): TXT records from a dict, NXDOMAIN
for every other name. Real DNS on the wire, so dnspython's resolver is tested as it runs."""

from __future__ import annotations

import socket
import threading
from types import TracebackType

import dns.message
import dns.rcode
import dns.rdataclass
import dns.rdatatype
from dns.rdtypes.ANY.TXT import TXT

_CHUNK = 255  # a TXT record's character-strings are at most 255 bytes: longer values are split


class DnsServer:
    def __init__(self) -> None:
        self.txt: dict[str, list[str]] = {}
        self.queries = 0
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.settimeout(0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="dns-server", daemon=True)

    @property
    def address(self) -> str:
        host, port = self._sock.getsockname()
        return f"{host}:{port}"

    def __enter__(self) -> DnsServer:
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join()
        self._sock.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, peer = self._sock.recvfrom(4096)
            except TimeoutError:
                continue
            self.queries += 1
            query = dns.message.from_wire(data)
            response = dns.message.make_response(query)
            question = query.question[0]
            values = self.txt.get(question.name.to_text().rstrip(".").lower())
            if values is None:
                response.set_rcode(dns.rcode.NXDOMAIN)
            elif question.rdtype == dns.rdatatype.TXT:
                rrset = response.find_rrset(
                    response.answer, question.name, dns.rdataclass.IN, dns.rdatatype.TXT, create=True
                )
                for value in values:
                    raw = value.encode("ascii")
                    chunks = [raw[at : at + _CHUNK] for at in range(0, len(raw), _CHUNK)]
                    rrset.add(TXT(dns.rdataclass.IN, dns.rdatatype.TXT, chunks), ttl=60)
            self._sock.sendto(response.to_wire(), peer)
