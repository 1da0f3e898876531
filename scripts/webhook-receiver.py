#!/usr/bin/env python3
"""A minimal webhook receiver for trying storgate's URL webhooks on loopback.

  webhook-receiver.py [--host 127.0.0.1] [--port 8099] [--log FILE]

Answers every POST with 204 and appends one line per call to FILE (default:
stdout): `<unix time> POST <path> <body>` (the body is storgate's JSON
payload, on one line). Prints `listening on HOST:PORT` once it accepts
connections. Standard library only; stop it with SIGTERM or Ctrl-C.
Used by scripts/demo.sh and mount-configs/publish-on-upload.json.
"""
import argparse
import http.server
import signal
import sys
import threading
import time

_lock = threading.Lock()


class Handler(http.server.BaseHTTPRequestHandler):
    server_version = "storgate-webhook-receiver"

    def _body(self):
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def do_POST(self):  # noqa: N802 (http.server's naming)
        body = self._body().decode("utf-8", "replace").replace("\n", " ")
        line = f"{time.time():.6f} POST {self.path} {body}\n"
        with _lock:
            self.server.out.write(line)
            self.server.out.flush()
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):  # no access log on stderr
        pass


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8099)
    ap.add_argument("--log", help="append calls to this file (default: stdout)")
    a = ap.parse_args()
    srv = http.server.ThreadingHTTPServer((a.host, a.port), Handler)
    srv.out = open(a.log, "a", encoding="utf-8") if a.log else sys.stdout
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"listening on {a.host}:{srv.server_address[1]}", flush=True)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
