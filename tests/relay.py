#!/usr/bin/env python3
"""A real SMTP submission relay for the TLS and AUTH tests (tests/relay.rs), on aiosmtpd.

TLS is either STARTTLS, required before AUTH and MAIL (`--mode starttls`, the submission port's way),
or TLS from the first byte (`--mode implicit`, smtps). AUTH is required before MAIL, over TLS only,
with the mechanisms given (PLAIN, LOGIN, XOAUTH2), for one user and secret. An optional SIZE limit
(RFC 1870) is announced and enforced. RCPT TO chosen addresses can be answered with a chosen reply
(`--refuse ADDRESS=REPLY`, repeatable), as a provider refuses spam or an unknown user. It can ask the
sender to slow down as Gmail and Amazon SES do: `--throttle-every N` answers the end of every Nth
message offered with `421 4.7.0`, and `--max-rate N` answers `421 4.7.0` to a message that would make
more than N accepted in the last second.

What it saw goes into the `--dump` folder:
  message-000001.json  each accepted message, written whole (tmp file, then rename), with the facts
                       of its session: connection number, TLS version (null in clear), the user who
                       logged in and the mechanism, the envelope, the size, the message text and
                       when it was accepted (`at`, Unix seconds);
  journal.jsonl        one line per event: connect, tls (the handshake done), tls-failed, command
                       (AUTH and MAIL, with the TLS version in force, null in clear), auth (its outcome).

    python3 tests/relay.py --mode starttls --cert server.pem --key server.key \\
        --user newsletter@signals.example.org --secret s3cret --dump /tmp/relay [--port 2525]

Prints `ready PORT` once listening (port 0, the default, picks a free one); stops on SIGTERM or SIGINT.
"""

import argparse
import asyncio
import base64
import collections
import binascii
import json
import logging
import os
import signal
import ssl
import sys
import time
from pathlib import Path

from aiosmtpd.smtp import MISSING, SMTP, AuthResult, LoginPassword

MECHANISMS = ("PLAIN", "LOGIN", "XOAUTH2")


class Relay:
    """The handler: checks logins, dumps messages, keeps the journal."""

    def __init__(self, args):
        self.user = args.user.encode()
        self.secret = args.secret.encode()
        self.dump = Path(args.dump)
        self.dump.mkdir(parents=True, exist_ok=True)
        self.journal = open(self.dump / "journal.jsonl", "a", buffering=1)
        self.pipelining = not args.no_pipelining
        # RCPT TO an address named here gets the reply given (`--refuse ADDRESS=REPLY`).
        self.refusals = {a.lower(): reply for a, reply in args.refuse}
        self.connections = 0
        self.messages = 0
        self.offered = 0
        self.throttle_every = args.throttle_every
        self.max_rate = args.max_rate
        # When the messages of the last second were accepted.
        self.recent = collections.deque()

    def note(self, event, server, **facts):
        line = {"event": event, "conn": server.conn, "tls": server.tls_version(), **facts}
        self.journal.write(json.dumps(line) + "\n")

    def connected(self, server):
        self.connections += 1
        return self.connections

    def settle(self, server, session, mechanism, login, ok, auth_data):
        """Records a login attempt's outcome; a refusal is answered 535 (RFC 4954 §6)."""
        self.note("auth", server, mechanism=mechanism, user=login.decode(errors="replace"), ok=ok)
        if not ok:
            return AuthResult(success=False, handled=False)
        session.mechanism = mechanism
        return AuthResult(success=True, auth_data=auth_data)

    def authenticate(self, server, session, envelope, mechanism, auth_data):
        """aiosmtpd's authenticator, called by its built-in PLAIN and LOGIN."""
        ok = auth_data.login == self.user and auth_data.password == self.secret
        return self.settle(server, session, mechanism, auth_data.login, ok, auth_data)

    async def auth_XOAUTH2(self, server, args):
        """Google's XOAUTH2: base64 of `user=U\\x01auth=Bearer TOKEN\\x01\\x01`, as an initial response
        or after an empty 334. A refused token gets a 334 with a base64 JSON error, which the client
        answers with an empty line, then 535 (as Gmail does)."""
        if len(args) == 2:
            try:
                blob = base64.b64decode(args[1], validate=True)
            except binascii.Error:
                await server.push("501 5.5.2 Can't decode base64")
                return AuthResult(success=False, handled=True)
        else:
            blob = await server.challenge_auth("")
            if blob is MISSING:
                return AuthResult(success=False, handled=True)
        fields = dict(f.split(b"=", 1) for f in blob.split(b"\x01") if b"=" in f)
        login, bearer = fields.get(b"user", b""), fields.get(b"auth", b"")
        if not bearer.startswith(b"Bearer "):
            await server.push("501 5.5.2 XOAUTH2 wants user=...^Aauth=Bearer ...^A^A")
            return AuthResult(success=False, handled=True)
        ok = login == self.user and bearer[len(b"Bearer "):] == self.secret
        if not ok:
            error = json.dumps({"status": "401", "schemes": "Bearer", "scope": "https://mail.google.com/"})
            if await server.challenge_auth(error.encode()) is MISSING:
                self.note("auth", server, mechanism="XOAUTH2", user=login.decode(errors="replace"), ok=False)
                return AuthResult(success=False, handled=True)
        return self.settle(server, server.session, "XOAUTH2", login, ok, LoginPassword(login, b""))

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        if self.pipelining:
            # aiosmtpd reads one command after another, so pipelined commands (RFC 2920) just work.
            responses.insert(-1, "250-PIPELINING")
        return responses

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        reply = self.refusals.get(address.lower())
        if reply is not None:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    def slow_down(self, server):
        """The reply that asks the sender to slow down, or None to take the message."""
        self.offered += 1
        now = time.time()
        while self.recent and self.recent[0] <= now - 1.0:
            self.recent.popleft()
        why = None
        if self.throttle_every and self.offered % self.throttle_every == 0:
            why, reply = "every", "421 4.7.0 Try again later, closing connection"
        elif self.max_rate and len(self.recent) >= self.max_rate:
            why, reply = "rate", "421 4.7.0 Rate limit exceeded, slow down"
        if why is None:
            self.recent.append(now)
            return None
        self.note("throttled", server, why=why, at=now)
        return reply

    async def handle_DATA(self, server, session, envelope):
        reply = self.slow_down(server)
        if reply is not None:
            return reply
        self.messages += 1
        facts = {
            "connection": server.conn,
            "tls": server.tls_version(),
            "user": session.auth_data.login.decode(errors="replace") if session.auth_data else None,
            "mechanism": getattr(session, "mechanism", None),
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "size": len(envelope.original_content),
            "message": envelope.original_content.decode("utf-8", errors="replace"),
            "at": time.time(),
        }
        name = self.dump / f"message-{self.messages:06}.json"
        tmp = name.with_suffix(".tmp")
        tmp.write_text(json.dumps(facts))
        os.replace(tmp, name)
        return f"250 2.0.0 OK queued as {self.messages}"

    async def handle_exception(self, error):
        # A failed STARTTLS handshake lands here (aiosmtpd then drops the connection).
        cause = error.__cause__ or error
        self.journal.write(json.dumps({"event": "error", "error": f"{type(cause).__name__}: {cause}"}) + "\n")
        return f"500 Error: ({type(error).__name__}) {error}"


class RelaySMTP(SMTP):
    """aiosmtpd's SMTP, numbering connections and recording AUTH and MAIL with the TLS in force."""

    def __init__(self, handler, mode, **kwargs):
        super().__init__(handler, **kwargs)
        self.mode = mode
        self.conn = None

    def tls_version(self):
        ssl_object = self.transport.get_extra_info("ssl_object") if self.transport else None
        return ssl_object.version() if ssl_object else None

    def connection_made(self, transport):
        first = self.transport is None
        super().connection_made(transport)
        if first:
            self.conn = self.event_handler.connected(self)
            self.event_handler.note("connect", self)
            if self.tls_version():
                # Implicit TLS: aiosmtpd counts only STARTTLS as TLS for `auth_require_tls`, and would
                # neither offer nor accept AUTH (aio-libs/aiosmtpd#281). This connection is encrypted.
                self._auth_require_tls = False
                self.event_handler.note("tls", self)
        else:
            self.event_handler.note("tls", self)  # STARTTLS done

    async def smtp_AUTH(self, arg):
        self.event_handler.note("command", self, verb="AUTH", mechanism=(arg.split() or [""])[0])
        await super().smtp_AUTH(arg)

    async def smtp_MAIL(self, arg):
        self.event_handler.note("command", self, verb="MAIL", arg=arg)
        if self.mode == "starttls" and not self.tls_version():
            await self.push("530 5.7.0 Must issue a STARTTLS command first")
            return
        await super().smtp_MAIL(arg)


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0 picks a free port (printed as `ready PORT`)")
    p.add_argument("--mode", choices=["starttls", "implicit"], required=True)
    p.add_argument("--cert", required=True, help="the server's certificate (PEM)")
    p.add_argument("--key", required=True, help="its private key (PEM)")
    p.add_argument("--user", required=True)
    p.add_argument("--secret", required=True, help="the password, or the XOAUTH2 bearer token")
    p.add_argument("--mechanisms", default="PLAIN,LOGIN", help="offered, comma-separated, of " + ",".join(MECHANISMS))
    p.add_argument("--size", type=int, default=33554432, help="the SIZE limit in bytes; 0 for none")
    p.add_argument("--no-pipelining", action="store_true", help="do not offer PIPELINING")
    p.add_argument("--dump", required=True, help="folder for the messages and the journal")
    p.add_argument("--refuse", action="append", default=[], metavar="ADDRESS=REPLY",
                   help="answer RCPT TO:<ADDRESS> with REPLY (`550 5.7.1 ...`); repeatable")
    p.add_argument("--throttle-every", type=int, default=0, metavar="N",
                   help="answer the end of every Nth message offered with 421 4.7.0 (slow down)")
    p.add_argument("--max-rate", type=float, default=0, metavar="N",
                   help="answer 421 4.7.0 to a message that would make more than N accepted in the last second")
    p.add_argument("--verbose", action="store_true", help="aiosmtpd's log on stderr")
    args = p.parse_args(argv)
    args.mechanisms = [m.strip().upper() for m in args.mechanisms.split(",") if m.strip()]
    refuse = []
    for r in args.refuse:
        address, _, reply = r.partition("=")
        if not address or not reply[:1] in ("4", "5"):
            p.error(f"--refuse wants ADDRESS=REPLY with a 4xx or 5xx reply, not {r!r}")
        refuse.append((address, reply))
    args.refuse = refuse
    unknown = [m for m in args.mechanisms if m not in MECHANISMS]
    if unknown:
        p.error(f"unknown mechanism {unknown[0]}; choose from {', '.join(MECHANISMS)}")
    return args


async def serve(args):
    loop = asyncio.get_running_loop()
    handler = Relay(args)
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(args.cert, args.key)
    smtp_options = dict(
        mode=args.mode,
        hostname="localhost",  # not socket.getfqdn(): no DNS lookup on the way to the greeting
        ident="Gazette test relay",
        data_size_limit=args.size or None,
        tls_context=tls if args.mode == "starttls" else None,
        auth_required=True,
        auth_require_tls=True,
        auth_exclude_mechanism=[m for m in MECHANISMS if m not in args.mechanisms],
        authenticator=handler.authenticate,
        loop=loop,
    )
    server = await loop.create_server(
        lambda: RelaySMTP(handler, **smtp_options),
        host=args.host,
        port=args.port,
        ssl=tls if args.mode == "implicit" else None,
    )
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"ready {server.sockets[0].getsockname()[1]}", flush=True)
    await stop.wait()
    server.close()


def main():
    args = parse_args(sys.argv[1:])
    logging.basicConfig(level=logging.INFO if args.verbose else logging.ERROR, stream=sys.stderr)
    asyncio.run(serve(args))


if __name__ == "__main__":
    main()
