"""Sending a campaign to an SMTP server vs a bare aiosmtplib loop, in one run; the sender's memory.

    .venv/bin/python benchmarks/sending.py [--recipients 20000] [--connections 8] [--senders 2]
    .venv/bin/python benchmarks/sending.py --memory        # the engine at 20,000 and 100,000
    .venv/bin/python benchmarks/sending.py --processes     # each sender in its own process
    .venv/bin/python benchmarks/sending.py --processes --reply-delay-ms 2   # a relay 2 ms away
    .venv/bin/python benchmarks/sending.py --processes --sink mailray --sink-store /dev/shm

The SMTP server is aiosmtpd in a process of its own that counts what it receives and keeps
nothing, offers PIPELINING (unless `--pipelining off`) and answers at once (or, with
`--reply-delay-ms`, each command after that long, as a relay across a network does: then the
rate is bound by waiting, not by the CPU); with `--sink mailray` it is the project's sink, which
stores each message in a maildir (made under `--sink-store`). `bare`:
pre-rendered messages sent by a plain aiosmtplib loop over `--connections` connections.
`engine`: a campaign to as many contacts in a scratch database, its outbox written by `send
now`, drained by `--senders` mail.sending.sender loops in this process (claim, compose, shared
Redis rate limits, SMTP over reused connections, each outcome recorded in Postgres) over the
same number of connections in all; with `--processes`, each of `--senders` senders in a process
of its own, running `sending.loops_per_sender` loops, as the sender actors do (the setting's
variable, where set, is passed on). `--composition campaign` (the default) is what the sender
actors send: mail.sending.campaign_compose (personalized HTML and text, a tracked email and its
links per recipient, open pixel, List-Unsubscribe, DKIM rsa-sha256; ed25519-sha256 alone with
`--dkim ed25519`, which most receivers do not check yet), and the bare loop sends the same message
rendered and signed once beforehand; `plain` is mail.sending.compose.compose_plain against short
pre-written text messages. Prints JSON lines: both rates and the ratio (goal >=
0.60); with --memory, the peak RSS of a process running the engine for each size (goal: flat).
The bare loop and the sender loops run on uvloop: the event loop Ray gives the sender actors
(every Ray worker installs it where it is installed); the SMTP server on asyncio's own.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, get_args

import aiosmtplib
import psycopg
import uvloop

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from smtp_sink import cpu_s  # noqa: E402 - benchmarks/smtp_sink.py, beside this file
from sync import scratch_database  # noqa: E402 - benchmarks/sync.py, beside this file

from mail import auth  # noqa: E402
from mail.campaigns import repository  # noqa: E402
from mail.config import load_settings  # noqa: E402
from mail.dkim import KeyType  # noqa: E402
from mail.sending.campaign_compose import CampaignComposer  # noqa: E402
from mail.sending.compose import compose_plain  # noqa: E402
from mail.sending.sender import Sender  # noqa: E402
from mail.sending.transport import SmtpTransport  # noqa: E402
from mail.services import open_services  # noqa: E402
from models.campaigns import CampaignInput  # noqa: E402
from models.tenancy import Principal  # noqa: E402

REDIS_URL = os.environ.get("MAILRAY_REDIS__URL", "redis://127.0.0.1:6379/0")
FROM = "news@bench.test"

SINK = textwrap.dedent(
    """
    import asyncio, sys
    from aiosmtpd.controller import Controller
    DELAY_S = float(sys.argv[2]) / 1000
    PIPELINING = sys.argv[3] == "on"
    class Count:
        received = 0
        async def handle_EHLO(self, server, session, envelope, hostname, responses):
            session.host_name = hostname
            return [*responses[:-1], "250-PIPELINING", responses[-1]] if PIPELINING else responses
        async def handle_DATA(self, server, session, envelope):
            Count.received += len(envelope.rcpt_tos)
            return "250 2.0.0 ok"
    class Delayed(Count):  # each answer DELAY_S late; aiosmtpd's own MAIL and RCPT otherwise
        async def handle_MAIL(self, server, session, envelope, address, options):
            await asyncio.sleep(DELAY_S)
            envelope.mail_from = address
            envelope.mail_options.extend(options)
            return "250 OK"
        async def handle_RCPT(self, server, session, envelope, address, options):
            await asyncio.sleep(DELAY_S)
            envelope.rcpt_tos.append(address)
            return "250 OK"
        async def handle_DATA(self, server, session, envelope):
            await asyncio.sleep(DELAY_S)
            return await super().handle_DATA(server, session, envelope)
    handler = Delayed() if DELAY_S else Count()
    controller = Controller(handler, hostname="127.0.0.1", port=int(sys.argv[1]))
    controller.start()
    print("ready", flush=True)
    sys.stdin.read()
    """
)


def emit(figure: str, **values: Any) -> None:
    load1, _, _ = os.getloadavg()
    print(json.dumps({"benchmark": "sending", "figure": figure, **values, "load_avg_1m": round(load1, 2),
                      "cpus": os.cpu_count()}), flush=True)  # fmt: skip


@contextlib.contextmanager
def running_sink(
    port: int, kind: str, reply_delay_ms: float = 0.0, pipelining: bool = True, store_in: str | None = None
) -> Iterator[int]:
    """The SMTP server in a process of its own, listening on `port`, until the block ends; its pid.
    `counting`: aiosmtpd that counts and keeps nothing (the cheapest server: the strictest
    comparison), answering MAIL, RCPT and DATA after `reply_delay_ms` each, offering PIPELINING
    (RFC 2920) unless `pipelining` is off; `mailray`: `mailray emulator smtp`, the project's sink,
    storing every message (it offers PIPELINING) in a maildir made under `store_in` (the system's
    temporary directory when None)."""
    with tempfile.TemporaryDirectory(prefix="mailray-bench-sink-", dir=store_in) as store:
        if kind == "counting":
            command = [
                sys.executable,
                "-c",
                SINK,
                str(port),
                str(reply_delay_ms),
                "on" if pipelining else "off",
            ]
        else:
            command = [str(Path(sys.executable).with_name("mailray")), "emulator", "smtp",
                       "--port", str(port), "--store", store]  # fmt: skip
        process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            assert process.stdout is not None
            ready = process.stdout.readline().strip()
            if ready != "ready" and not ready.startswith("SMTP sink:"):
                raise RuntimeError(f"the SMTP server did not start: {ready!r}")
            yield process.pid
        finally:
            process.terminate()
            process.wait(30)


HTML = (
    "<html><body><h1>News for {{firstName|you}}</h1><p>Hello {{firstName|there}}, here is what is new at "
    "{{company|our shop}} this week.</p>"
    + "".join(
        f'<p><a href="https://shop.bench.test/item/{n}?ref=news">Item {n}</a> is back.</p>' for n in range(8)
    )
    + '<p><a href="mailto:help@bench.test">Write to us</a></p></body></html>'
)
DKIM_KEYS = '{ "bench.test" = { selector = "b1" } }'


def campaign_input() -> CampaignInput:
    return CampaignInput(name="Bench", subject="News for {{firstName|you}}", from_name="Us", from_email=FROM,
                         body_html=HTML, body_text="Hello {{firstName|there}}, here is the news.",
                         preview_text="This week")  # fmt: skip


def campaign_message(data_dir: Path) -> bytes:
    """The campaign's message for one recipient, rendered, tracked and signed: what `bare` sends."""
    from mail.campaigns.personalize import Recipient
    from mail.campaigns.render import MessageContent, RenderOptions, TokenTrackingPlan, render_message
    from mail.dkim import load_signers, signer_for
    from mail.tracking.tokens import TokenSigner

    settings = load_settings(environ={"MAILRAY_APP__DATA_DIR": str(data_dir), "MAILRAY_DKIM__KEYS": DKIM_KEYS,
                                      "MAILRAY_DATABASE__URL": "postgresql://unused", "MAILRAY_REDIS__URL": REDIS_URL})  # fmt: skip
    from mail.crypto import load_keyring

    keyring = load_keyring(settings)
    campaign = campaign_input()
    content = MessageContent(subject=str(campaign.subject), from_name="Us", from_email=FROM, body_html=HTML,
                             body_text=str(campaign.body_text), preview_text="This week")  # fmt: skip
    plan = TokenTrackingPlan(TokenSigner.from_keyring(keyring), settings.tracking.base_url, 1, recipient_id=1)
    message = render_message(content, Recipient(email="r0@example.com", first_name="R0"), RenderOptions(), plan,
                             campaign_id=uuid.uuid4()).message  # fmt: skip
    signer = signer_for(load_signers(settings, keyring), FROM)
    assert signer is not None
    return signer.sign(message)


def rendered(index: int) -> bytes:
    return (
        f"From: Us <{FROM}>\r\nTo: r{index}@example.com\r\nSubject: News for r{index}\r\n"
        f"Message-ID: <{uuid.uuid4().hex}@bench.test>\r\nMIME-Version: 1.0\r\n"
        f"Content-Type: text/plain; charset=utf-8\r\n\r\nHello r{index}, here is the news.\r\n"
    ).encode()


async def bare(port: int, recipients: int, connections: int, data_dir: Path | None) -> float:
    """`recipients` pre-rendered messages (the signed campaign message for each, with data_dir)."""
    one = campaign_message(data_dir) if data_dir is not None else None
    messages = [one or rendered(index) for index in range(recipients)]
    queue = iter(range(recipients))

    async def worker() -> None:
        client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port)
        await client.connect()
        for index in queue:
            await client.sendmail(FROM, [f"r{index}@example.com"], messages[index])
        await client.quit()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(connections)))
    return recipients / (time.perf_counter() - started)


def engine_environ(url: str, data_dir: Path | None) -> dict[str, str]:
    return {
        "MAILRAY_DATABASE__URL": url, "MAILRAY_REDIS__URL": REDIS_URL,
        "MAILRAY_APP__DATA_DIR": str(data_dir or "/tmp/mailray-bench"),
        "MAILRAY_SENDING__GLOBAL_RATE_PER_S": "1000000", "MAILRAY_SENDING__PER_DOMAIN_RATE_PER_S": "1000000",
        "MAILRAY_SENDING__CLAIM_BATCH": "200", "MAILRAY_DATABASE__POOL_MAX_SIZE": "20",
        **({"MAILRAY_DKIM__KEYS": DKIM_KEYS} if data_dir is not None else {}),
        **{key: os.environ[key] for key in ("MAILRAY_SENDING__LOOPS_PER_SENDER",) if key in os.environ},
    }  # fmt: skip


async def drain_one(
    port: int, url: str, connections: int, name: str, data_dir: Path | None
) -> tuple[int, float]:
    """One sender in this process until the outbox is empty (a child of --processes), as the
    Sender actor runs it: `sending.loops_per_sender` loops over one transport. It says "ready",
    waits for a line on stdin, then sends; what it sent, and its CPU seconds."""
    settings = load_settings(environ=engine_environ(url, data_dir))
    services = await open_services(settings)
    transport = SmtpTransport("127.0.0.1", port, connections=connections)
    compose = CampaignComposer(settings, services.keyring) if data_dir is not None else compose_plain
    loops = [Sender(services, name, transport, compose) for _ in range(settings.sending.loops_per_sender)]
    print("ready", flush=True)
    await asyncio.to_thread(sys.stdin.readline)
    cpu = time.process_time()
    sent = sum(await asyncio.gather(*(_drain(loop) for loop in loops)))
    cpu = time.process_time() - cpu
    await transport.close()
    await services.close()
    return sent, cpu


async def _drain(loop: Sender) -> int:
    """Steps until the outbox has nothing left to claim; the messages sent."""
    sent = 0
    while (report := await loop.step()).claimed:
        sent += report.sent
    return sent


async def engine(
    port: int,
    recipients: int,
    connections: int,
    senders: int,
    data_dir: Path | None,
    *,
    processes: bool = False,
    dkim: KeyType = "rsa",
) -> dict[str, Any]:
    """The sender loops on a campaign: with data_dir, campaign composition (DKIM key in data_dir);
    with `processes`, each loop in a process of its own, as the sender actors are (`dkim`: the
    key type data_dir holds, which the processes are told)."""
    async with scratch_database("sending") as url:
        settings = load_settings(environ=engine_environ(url, data_dir))
        services = await open_services(settings)
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            workspace, user = await auth.create_workspace(conn, "Bench", owner_email="o@bench.test")
            owner = Principal(workspace_id=workspace.id, user_id=user.id, role="owner")
            await conn.execute(
                "INSERT INTO email_accounts (workspace_id, user_id, email, provider, sync_status) "
                "VALUES (%s, %s, %s, 'smtp', 'synced')",
                (workspace.id, user.id, FROM),
            )
            async with conn.cursor().copy(
                "COPY contacts (workspace_id, email, first_name) FROM STDIN"
            ) as copy:
                for index in range(recipients):
                    await copy.write_row((workspace.id, f"r{index}@example.com", f"R{index}"))
            content = campaign_input() if data_dir is not None else CampaignInput(
                name="Bench", subject="News", from_name="Us", from_email=FROM, body_text="Hello, here is the news.")  # fmt: skip
            campaign = await repository.create_campaign(conn, owner, content)
            await repository.send_now(conn, owner, campaign.id)
        if processes:
            await services.close()
            return await _in_processes(port, url, connections, senders, data_dir, dkim)
        transports = [
            SmtpTransport("127.0.0.1", port, connections=max(1, connections // senders))
            for _ in range(senders)
        ]
        compose = CampaignComposer(settings, services.keyring) if data_dir is not None else compose_plain
        loops = [Sender(services, f"bench-{n}", transports[n], compose) for n in range(senders)]

        started = time.perf_counter()
        sent = sum(await asyncio.gather(*(_drain(loop) for loop in loops)))
        elapsed = time.perf_counter() - started
        for transport in transports:
            await transport.close()
        await services.close()
    return {"sent": sent, "requests_per_s": round(sent / elapsed, 1), "seconds": round(elapsed, 2),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}  # fmt: skip


async def _in_processes(
    port: int, url: str, connections: int, senders: int, data_dir: Path | None, dkim: KeyType
) -> dict[str, Any]:
    command = [
        sys.executable,
        __file__,
        "--drain-one",
        url,
        "--connections",
        str(max(1, connections // senders)),
    ]
    command += ["--composition", "plain"] if data_dir is None else ["--dkim", dkim]
    children = [
        await asyncio.create_subprocess_exec(*command, "--name", f"bench-{n}", stdin=subprocess.PIPE,
                                             stdout=subprocess.PIPE, env={**os.environ, "BENCH_SINK_PORT": str(port)})
        for n in range(senders)
    ]  # fmt: skip
    for child in children:
        assert child.stdout is not None and (await child.stdout.readline()).strip() == b"ready"
    started = time.perf_counter()
    for child in children:
        assert child.stdin is not None
        child.stdin.write(b"go\n")
        await child.stdin.drain()
    outputs = [await child.communicate() for child in children]
    elapsed = time.perf_counter() - started
    results = [json.loads(out.decode().strip().splitlines()[-1]) for out, _ in outputs]
    sent = sum(result["sent"] for result in results)
    return {
        "sent": sent,
        "requests_per_s": round(sent / elapsed, 1),
        "seconds": round(elapsed, 2),
        "processes": senders,
        "sender_cpu_ms_per_message": round(
            sum(result["cpu_s"] for result in results) * 1000 / max(1, sent), 3
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--recipients", type=int, default=20000)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--senders", type=int, default=2)
    parser.add_argument("--memory", action="store_true")
    parser.add_argument("--composition", choices=("campaign", "plain"), default="campaign")
    parser.add_argument("--processes", action="store_true", help="each sender in a process of its own")
    parser.add_argument(
        "--sink",
        choices=("counting", "mailray"),
        default="counting",
        help="the SMTP server: a counting aiosmtpd, or `mailray emulator smtp` (stores each message)",
    )
    parser.add_argument(
        "--reply-delay-ms",
        type=float,
        default=0.0,
        help="the counting server answers MAIL, RCPT and DATA after this long each, as a relay across a "
        "network does (0: at once, the strictest comparison)",
    )
    parser.add_argument(
        "--dkim",
        choices=get_args(KeyType),
        default="rsa",
        help="the signing key: rsa-sha256, 2048 bits (what receivers check), or ed25519-sha256 alone",
    )
    parser.add_argument(
        "--pipelining",
        choices=("on", "off"),
        default="on",
        help="whether the counting server offers PIPELINING (RFC 2920), as relays and the project's sink do; "
        "the bare aiosmtplib loop sends a command at a time either way, the sender pipelines where offered",
    )
    parser.add_argument(
        "--sink-store",
        metavar="DIR",
        help="with --sink mailray: where its maildir goes (default: the system's temporary directory); "
        "/dev/shm keeps the disk out of the figure",
    )
    parser.add_argument("--drain-one", metavar="DATABASE_URL", help=argparse.SUPPRESS)
    parser.add_argument("--name", default="bench-0", help=argparse.SUPPRESS)
    parser.add_argument("--engine-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    port = int(os.environ.get("BENCH_SINK_PORT", "0")) or _free_port()
    data_dir = _dkim_data_dir(args.dkim) if args.composition == "campaign" else None
    if args.drain_one:  # a child of --processes
        sent, cpu = uvloop.run(drain_one(port, args.drain_one, args.connections, args.name, data_dir))
        print(json.dumps({"sent": sent, "cpu_s": cpu}))
        return
    if args.engine_only:  # a child of --memory: the engine alone against a running sink
        print(json.dumps(uvloop.run(engine(port, args.recipients, args.connections, args.senders, data_dir))))
        return
    if args.reply_delay_ms and args.sink != "counting":
        parser.error("--reply-delay-ms: only the counting server can be told to wait")
    if args.pipelining == "off" and args.sink != "counting":
        parser.error("--pipelining off: only the counting server can be told not to offer it")
    with running_sink(port, args.sink, args.reply_delay_ms, args.pipelining == "on", args.sink_store) as sink:
        if args.memory:
            for size in (20000, 100000):
                child = subprocess.run(
                    [sys.executable, __file__, "--engine-only", "--recipients", str(size),
                     "--connections", str(args.connections), "--senders", str(args.senders),
                     "--composition", args.composition, "--dkim", args.dkim],
                    env={**os.environ, "BENCH_SINK_PORT": str(port)}, capture_output=True, text=True, check=True,
                )  # fmt: skip
                emit("engine_memory", recipients=size, **json.loads(child.stdout.strip().splitlines()[-1]))
            return
        # CPU per message of the SMTP server and of the sending side: which one sets the pace.
        sink_cpu, client_cpu = cpu_s(sink), time.process_time()
        bare_rate = uvloop.run(bare(port, args.recipients, args.connections, data_dir))
        emit(
            "bare_aiosmtplib",
            sink=args.sink,
            pipelining_offered=args.pipelining == "on",
            reply_delay_ms=args.reply_delay_ms,
            recipients=args.recipients,
            connections=args.connections,
            requests_per_s=round(bare_rate, 1),
            sink_cpu_ms_per_message=round((cpu_s(sink) - sink_cpu) * 1000 / args.recipients, 3),
            client_cpu_ms_per_message=round((time.process_time() - client_cpu) * 1000 / args.recipients, 3),
        )
        sink_cpu = cpu_s(sink)
        result = uvloop.run(
            engine(
                port,
                args.recipients,
                args.connections,
                args.senders,
                data_dir,
                processes=args.processes,
                dkim=args.dkim,
            )
        )
        emit("engine", sink=args.sink, pipelining_offered=args.pipelining == "on", reply_delay_ms=args.reply_delay_ms,
             recipients=args.recipients,
             connections=args.connections, senders=args.senders, composition=args.composition,
             dkim=args.dkim if data_dir is not None else None, **result,
             sink_cpu_ms_per_message=round((cpu_s(sink) - sink_cpu) * 1000 / max(1, result["sent"]), 3),
             fraction_of_bare=round(result["requests_per_s"] / bare_rate, 3))  # fmt: skip


def _dkim_data_dir(key_type: KeyType) -> Path:
    """A data dir with a dev keyring and a key of `key_type` (rsa: 2048 bits) for bench.test (made
    once, kept for reruns)."""
    from mail.crypto import load_keyring
    from mail.dkim import create_key, key_path

    data_dir = Path("/tmp/mailray-bench-campaign" + ("" if key_type == "rsa" else f"-{key_type}"))
    settings = load_settings(environ={"MAILRAY_APP__DATA_DIR": str(data_dir), "MAILRAY_DATABASE__URL": "postgresql://unused",
                                      "MAILRAY_REDIS__URL": REDIS_URL})  # fmt: skip
    if not key_path(settings, "bench.test", "b1").exists():
        create_key(settings, load_keyring(settings), "bench.test", "b1", key_type)
    return data_dir


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


if __name__ == "__main__":
    main()
