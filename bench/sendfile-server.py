#!/usr/bin/env python3
"""The machine's pull limit: the fastest an HTTP server can hand a file to a
client over loopback. Answers GET /file with FILE by sendfile(2), the kernel's
zero-copy path, with no storage lookups or digest checks.

    sendfile-server.py PORT FILE
"""
import http.server
import os
import sys


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        # Only /file sends it: a readiness probe of / must not pull the whole file.
        if self.path != "/file":
            self.send_error(404)
            return
        with open(FILE, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            self.send_response(200)
            self.send_header("Content-Length", str(size))
            self.send_header("Content-Type", "application/octet-stream")
            self.end_headers()
            self.wfile.flush()
            offset = 0
            while offset < size:
                offset += os.sendfile(self.connection.fileno(), f.fileno(), offset, size - offset)

    def log_message(self, *args):
        pass


FILE = sys.argv[2]
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
