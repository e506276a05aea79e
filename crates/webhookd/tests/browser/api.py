"""The JSON API, for arranging what the browser scenarios look at and checking their effects."""

import json
import time
import urllib.error
import urllib.request


class Api:
    def __init__(self, base, key):
        self.base = base
        self.key = key

    def call(self, method, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base + "/api/v1" + path, data=data, method=method)
        request.add_header("authorization", f"Bearer {self.key}")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, json.load(response)
        except urllib.error.HTTPError as error:
            return error.code, json.load(error)

    def ok(self, method, path, body=None):
        status, answer = self.call(method, path, body)
        assert 200 <= status < 300, f"{method} {path}: {status} {answer}"
        return answer["data"]

    def wait_for_log(self, agent, webhook, log, status, timeout=15):
        deadline = time.monotonic() + timeout
        while True:
            found = self.ok("GET", f"/agents/{agent}/webhooks/{webhook}/logs/{log}")
            if found["status"] == status:
                return found
            assert time.monotonic() < deadline, f"log {log} never became {status}: {found}"
            time.sleep(0.05)
