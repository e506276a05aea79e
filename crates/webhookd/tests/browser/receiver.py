"""A local webhook receiver for the browser tests: records every request, answers by path.

`/fail...` answers 500 with markup in its body, anything else 200. `GET /` serves a page on this
(other) site linking to the portal, to open a portal link the way a customer would: from the
platform's own site.
"""

import html
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Receiver:
    def __init__(self):
        self.requests = []
        self.portal_link = ""
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _record(self):
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length)
                with receiver.lock:
                    receiver.requests.append((self.command, self.path, dict(self.headers), body))
                failing = self.path.startswith("/fail")
                reply = b"upstream exploded <b>bold</b>" if failing else b"ok"
                self.send_response(500 if failing else 200)
                self.send_header("content-type", "text/plain")
                self.send_header("content-length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            do_POST = do_PUT = do_PATCH = _record

            def do_GET(self):
                page = (
                    "<!doctype html><title>Platform</title>"
                    f'<a id="portal" href="{html.escape(receiver.portal_link)}">Open webhook portal</a>'
                ).encode()
                self.send_response(200)
                self.send_header("content-type", "text/html")
                self.send_header("content-length", str(len(page)))
                self.end_headers()
                self.wfile.write(page)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, path):
        return f"http://127.0.0.1:{self.port}{path}"

    def received(self, path_prefix):
        with self.lock:
            return [r for r in self.requests if r[1].startswith(path_prefix)]

    def stop(self):
        self.server.shutdown()
