#!/usr/bin/env python3
"""A webhook receiver for tests/webhook_e2e_test.cc, written the way a bridge
author would (docs/webhook.md): HTTPS on 127.0.0.1, checks
Sealpost-Timestamp against a replay window and Sealpost-Signature
(v1=HMAC-SHA256(secret, timestamp + "." + body)) in constant time, answers
401 when either is wrong, 500 to the first --fail-first valid requests (to
make the sender retry), 200 otherwise. Each request is one JSON line in
--log: {"status", "valid", "why", "timestamp", "notification_id", "body"}.
The secret file is read again for every request, so a test can change it.
"""
import argparse
import hashlib
import hmac
import http.server
import json
import os
import ssl
import sys
import threading
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--secret-file", required=True)
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--log", required=True)
    ap.add_argument("--fail-first", type=int, default=0)
    ap.add_argument("--window", type=int, default=300)
    args = ap.parse_args()

    lock = threading.Lock()
    state = {"failures_left": args.fail_first}

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *a):  # quiet
            pass

        def answer(self, status, record):
            record["status"] = status
            with lock, open(args.log, "a", encoding="utf-8") as f:
                f.write(json.dumps(record, ensure_ascii=False) + "\n")
            body = b'{"ok":true}' if status == 200 else b'{"error":"no"}'
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self):
            length = int(self.headers.get("Content-Length", "0"))
            if length < 0 or length > 1 << 20:
                self.answer(413, {"valid": False, "why": "too large", "body": ""})
                return
            body = self.rfile.read(length)
            ts = self.headers.get("Sealpost-Timestamp", "")
            sig = self.headers.get("Sealpost-Signature", "")
            rec = {"valid": False, "why": "", "timestamp": ts, "path": self.path,
                   "content_type": self.headers.get("Content-Type", ""),
                   "notification_id": self.headers.get("Sealpost-Notification-Id", ""),
                   "body": body.decode("utf-8", "replace")}
            with open(args.secret_file, "rb") as f:
                secret = f.read().rstrip(b"\r\n")
            if not ts.isdigit() or abs(time.time() - int(ts)) > args.window:
                rec["why"] = "timestamp outside the replay window"
                self.answer(401, rec)
                return
            expected = "v1=" + hmac.new(secret, ts.encode() + b"." + body, hashlib.sha256).hexdigest()
            if not hmac.compare_digest(expected, sig):
                rec["why"] = "bad signature"
                self.answer(401, rec)
                return
            rec["valid"] = True
            with lock:
                fail = state["failures_left"] > 0
                if fail:
                    state["failures_left"] -= 1
            self.answer(500 if fail else 200, rec)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(args.cert, args.key)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    tmp = args.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write(str(server.server_address[1]))
    os.rename(tmp, args.port_file)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
