"""SMTP sink throughput: a bare aiosmtplib loop (no outbox, no rate limits, no DKIM) sending
pre-rendered messages over C reused connections into `mailray emulator smtp` in its own process.
The baseline the campaign sender is compared with. One JSON line per figure.

.venv/bin/python benchmarks/smtp_sink.py [MESSAGES [CONNECTIONS]]     (20,000 and 8: about 30 s)

`send_bare` is the reusable part: any sink or relay, any list of rendered messages.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import sys
import tempfile
import time
import uuid
from email.message import EmailMessage
from pathlib import Path

import aiosmtplib

from cluster.emulators.smtp import SmtpSinkAdmin

MESSAGES = 20_000
CONNECTIONS = 8
ENVELOPE_FROM = "bounces@sender.test"
MAILRAY = str(Path(sys.executable).with_name("mailray"))
_TO = re.compile(rb"^To:[^\r\n]*?<?([^<>\s]+@[^<>\s]+)>?\r?$", re.IGNORECASE | re.MULTILINE)


def _emit(figure: str, value: float, **detail: object) -> None:
    line = {"benchmark": "smtp_sink", "figure": figure, **detail, "value": round(value, 1)}
    print(json.dumps(line), flush=True)


def render(count: int) -> list[bytes]:
    """Campaign-like messages (text and HTML alternatives, about 3 KB), each to its own recipient:
    one rendering, then the per-recipient fields put in, as a mail merge does."""
    paragraph = "Our spring catalogue is out, with new items in every range and prices held. " * 4
    html = "".join(f"<p>{paragraph}</p>" for _ in range(5))
    template = EmailMessage()
    template["From"] = "News <news@sender.test>"
    template["To"] = "{to}"
    template["Subject"] = "Spring news #{number}"
    template["Message-ID"] = "{message_id}"
    template.set_content(paragraph * 3)
    template.add_alternative(f"<html><body>{html}</body></html>", subtype="html")
    rendered = template.as_bytes(policy=template.policy.clone(linesep="\r\n"))
    return [
        rendered.replace(b"{to}", f"reader{number}@example.com".encode())
        .replace(b"{number}", str(number).encode())
        .replace(b"{message_id}", f"<{uuid.uuid4().hex}@sender.test>".encode())
        for number in range(count)
    ]


def recipient_of(message: bytes) -> str:
    match = _TO.search(message.split(b"\r\n\r\n", 1)[0])
    return match[1].decode() if match else "reader@example.com"


async def send_bare(host: str, port: int, messages: list[bytes], connections: int) -> float:
    """Send every message (envelope recipient: its To address) over `connections` reused
    connections, as fast as the server takes them; messages per second. Raises on any refusal."""
    pending = iter(messages)

    async def connection() -> None:
        smtp = aiosmtplib.SMTP(hostname=host, port=port, timeout=60)
        await smtp.connect()
        try:
            for message in pending:  # one iterator shared by all: each message is sent once
                await smtp.sendmail(ENVELOPE_FROM, [recipient_of(message)], message)
        finally:
            await smtp.quit()

    started = time.perf_counter()
    await asyncio.gather(*(connection() for _ in range(connections)))
    return len(messages) / (time.perf_counter() - started)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_s(pid: int) -> float:
    """User and system CPU seconds of process `pid` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def main(count: int, connections: int) -> None:
    started = time.perf_counter()
    messages = render(count)
    average = sum(map(len, messages)) / len(messages)
    _emit("render_messages_per_s", count / (time.perf_counter() - started), average_bytes=round(average))
    with tempfile.TemporaryDirectory(prefix="smtp-sink-bench-") as directory:
        port, admin_port = free_port(), free_port()
        command = [
            *(MAILRAY, "emulator", "smtp", "--port", str(port), "--admin-port", str(admin_port)),
            *("--store", str(Path(directory) / "store")),
        ]
        sink = await asyncio.create_subprocess_exec(*command, stdout=asyncio.subprocess.PIPE)
        try:
            assert sink.stdout is not None
            ready = (await sink.stdout.readline()).decode()
            if not ready.startswith("SMTP sink:"):
                raise RuntimeError(f"the sink did not start: {ready!r}")
            idle_rss, idle_cpu = rss_mib(sink.pid), cpu_s(sink.pid)
            client_cpu = time.process_time()
            rate = await send_bare("127.0.0.1", port, messages, connections)
            client_cpu = time.process_time() - client_cpu
            loaded_rss, sink_cpu = rss_mib(sink.pid), cpu_s(sink.pid) - idle_cpu
            async with SmtpSinkAdmin(f"http://127.0.0.1:{admin_port}") as admin:
                stored = await admin.count()
                stats = await admin.stats()
        finally:
            sink.send_signal(signal.SIGTERM)
            await asyncio.wait_for(sink.wait(), 30)
    if stored != count or stats.connections != connections:
        raise RuntimeError(f"stored {stored} of {count} over {stats.connections} connections")
    detail = {"messages": count, "connections": connections, "sink": "own process"}
    _emit("bare_aiosmtplib_messages_per_s", rate, **detail)
    # Which side is the limit: CPU microseconds per message in the sink and in this client.
    _emit("sink_cpu_us_per_message", sink_cpu * 1e6 / count)
    _emit("client_cpu_us_per_message", client_cpu * 1e6 / count)
    _emit("sink_rss_idle_mib", idle_rss)
    _emit("sink_rss_after_mib", loaded_rss, messages=count)
    _emit("sink_rss_growth_kib_per_1000_messages", (loaded_rss - idle_rss) * 1024 / (count / 1000))


if __name__ == "__main__":
    arguments = [int(argument) for argument in sys.argv[1:3]]
    asyncio.run(main(*(arguments + [MESSAGES, CONNECTIONS][len(arguments) :])))
