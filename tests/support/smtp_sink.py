#!/usr/bin/python3
# A real SMTP server for tests (aiosmtpd, Debian's python3-aiosmtpd) on
# 127.0.0.1, port chosen by the OS. Every message is saved byte for byte as
# DIR/<n>.eml (envelope in DIR/<n>.env: "from\nto,to\n"), written to a temp
# name then renamed. The port is written to DIR/port once listening.
# If DIR/reply exists, its first line is the answer to the end of DATA
# (e.g. "451 4.3.0 try later" or "554 5.7.1 no"), and the message is not saved.
# With --tlscert/--tlskey, STARTTLS is offered (and required).
import argparse
import asyncio
import os
import ssl

from aiosmtpd.smtp import SMTP


class Sink:
    def __init__(self, directory):
        self.dir = directory
        # A sink restarted on the same directory numbers on.
        self.n = 0
        while os.path.exists(os.path.join(directory, "%d.eml" % (self.n + 1))):
            self.n += 1

    async def handle_DATA(self, server, session, envelope):
        reply_file = os.path.join(self.dir, "reply")
        if os.path.exists(reply_file):
            with open(reply_file) as f:
                return f.readline().strip()
        self.n += 1
        base = os.path.join(self.dir, "%d" % self.n)
        with open(base + ".env.tmp", "w") as f:
            f.write(envelope.mail_from + "\n" + ",".join(envelope.rcpt_tos) + "\n")
        os.rename(base + ".env.tmp", base + ".env")
        with open(base + ".eml.tmp", "wb") as f:
            f.write(envelope.original_content)
        os.rename(base + ".eml.tmp", base + ".eml")
        return "250 2.0.0 Ok: queued as SINK%d" % self.n


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", required=True)
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--tlscert")
    ap.add_argument("--tlskey")
    a = ap.parse_args()
    tls = None
    if a.tlscert:
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(a.tlscert, a.tlskey)
    handler = Sink(a.dir)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(handler, hostname="sink.test", tls_context=tls,
                     require_starttls=tls is not None, decode_data=False),
        host="127.0.0.1", port=a.port)
    port = server.sockets[0].getsockname()[1]
    with open(os.path.join(a.dir, "port.tmp"), "w") as f:
        f.write("%d\n" % port)
    os.rename(os.path.join(a.dir, "port.tmp"), os.path.join(a.dir, "port"))
    async with server:
        await server.serve_forever()


asyncio.run(main())
