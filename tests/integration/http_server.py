#!/usr/bin/python3
"""http_server.py - a test HTTP server for the fetcher (common/fetch.c).

Serves DIR on 127.0.0.1 at an ephemeral port, written to PORT_FILE (by
rename, so a reader never sees half a number). Every request is appended to
LOG as one line: "GET <path> range=<Range header or -> status=<code>".
The mode is chosen by the path's prefix:

  /files/NAME          the file; honours Range (206, or 416 past the end)
  /drop/N/NAME         the first N requests of this path send the headers and
                       half of the body, then drop the connection
  /error/N/NAME        the first N requests of this path answer 500
  /wrong/NAME          the file with its last byte flipped
  /slow/MS/NAME        the file in 1 KiB pieces, MS milliseconds apart
  /norange/NAME        the whole file (200) even when a Range is asked for
  /redirect/NAME       302 to /files/NAME

Usage: http_server.py DIR PORT_FILE LOG   (stdlib only; stop it with SIGTERM)
"""
import http.server
import os
import re
import sys
import threading
import time

ROOT, PORT_FILE, LOG = sys.argv[1:4]
counts = {}
lock = threading.Lock()


def count(path):
    with lock:
        counts[path] = counts.get(path, 0) + 1
        return counts[path]


class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, fmt, *args):
        pass

    def log_line(self, status):
        with lock, open(LOG, "a") as f:
            f.write("%s %s range=%s status=%d\n" % (self.command, self.path,
                    self.headers.get("Range") or "-", status))

    def fail(self, status):
        self.log_line(status)
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self):
        path = self.path.split("?", 1)[0]
        m = re.match(r"^/(files|wrong|norange|redirect)/(.+)$|^/(drop|error|slow)/(\d+)/(.+)$", path)
        if not m:
            return self.fail(404)
        mode = m.group(1) or m.group(3)
        arg = int(m.group(4)) if m.group(4) else 0
        name = m.group(2) or m.group(5)
        fpath = os.path.join(ROOT, name)
        if ".." in name.split("/") or not os.path.isfile(fpath):
            return self.fail(404)
        if mode == "redirect":
            self.log_line(302)
            self.send_response(302)
            self.send_header("Location", "/files/" + name)
            self.send_header("Content-Length", "0")
            return self.end_headers()
        nth = count(path)
        if mode == "error" and nth <= arg:
            return self.fail(500)
        with open(fpath, "rb") as f:
            data = f.read()
        if mode == "wrong" and data:
            data = data[:-1] + bytes([data[-1] ^ 0xFF])
        start, status = 0, 200
        rng = self.headers.get("Range")
        if rng and mode != "norange":
            r = re.match(r"^bytes=(\d+)-(\d*)$", rng.strip())
            if not r:
                return self.fail(400)
            start = int(r.group(1))
            end = int(r.group(2)) if r.group(2) else len(data) - 1
            if start >= len(data):
                self.log_line(416)
                self.send_response(416)
                self.send_header("Content-Range", "bytes */%d" % len(data))
                self.send_header("Content-Length", "0")
                return self.end_headers()
            end = min(end, len(data) - 1)
            body, status = data[start:end + 1], 206
        else:
            body = data
        self.log_line(status)
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Accept-Ranges", "bytes")
        if status == 206:
            self.send_header("Content-Range", "bytes %d-%d/%d" % (start, start + len(body) - 1,
                                                                  len(data)))
        self.end_headers()
        if mode == "drop" and nth <= arg:
            self.wfile.write(body[:max(1, len(body) // 2)])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(2)
            return
        if mode == "slow":
            for i in range(0, len(body), 1024):
                self.wfile.write(body[i:i + 1024])
                self.wfile.flush()
                time.sleep(arg / 1000.0)
            return
        self.wfile.write(body)


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request, client_address):
        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            super().handle_error(request, client_address)


srv = Server(("127.0.0.1", 0), Handler)
tmp = PORT_FILE + ".tmp"
with open(tmp, "w") as f:
    f.write("%d\n" % srv.server_address[1])
os.rename(tmp, PORT_FILE)
srv.serve_forever()
