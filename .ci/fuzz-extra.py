#!/usr/bin/env python3
"""What schemathesis rarely generates, sent to every operation of the OpenAPI document: a NUL
character in each string field of each JSON body, in each query parameter and in each string path
parameter, and unknown HTTP methods on every path. Any 5xx, a dropped connection, or an unknown
method name in /metrics fails the run.

Usage: fuzz-extra.py BASE_URL API_KEY   (standard library only)
"""

import http.client
import json
import sys
import urllib.parse
import uuid

BASE, KEY = sys.argv[1], sys.argv[2]
HOST = urllib.parse.urlsplit(BASE).netloc
NUL = "nul\u0000here"
UNKNOWN_METHODS = ["FUZZFOO", "PROPFIND", "get", "PURGE", "M" * 200]
failures = []
sent = 0


def request(method, path, body=None, auth=True):
    global sent
    sent += 1
    headers = {"Authorization": f"Bearer {KEY}"} if auth else {}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    connection = http.client.HTTPConnection(HOST, timeout=30)
    try:
        connection.request(method, path, body=data, headers=headers)
        response = connection.getresponse()
        text = response.read().decode(errors="replace")
    except Exception as error:  # a dropped connection is a failure too
        failures.append(f"{method} {path}: no answer ({error})")
        return None, None
    finally:
        connection.close()
    if response.status >= 500:
        failures.append(f"{method} {path} {json.dumps(body)[:200]}: {response.status} {text[:200]}")
    try:
        return response.status, json.loads(text)
    except ValueError:
        return response.status, text


def setup_ids():
    """Real ids, so requests reach past the 404s into validation and the store."""
    _, agent = request("POST", "/api/v1/agents", {"name": "fuzz-extra"})
    agent_id = agent["data"]["id"]
    _, webhook = request(
        "POST",
        f"/api/v1/agents/{agent_id}/webhooks",
        {"name": "fuzz", "webhook_url": "https://example.com/h", "events": ["call.completed"]},
    )
    webhook_id = webhook["data"]["id"]
    _, event = request(
        "POST",
        f"/api/v1/agents/{agent_id}/events",
        {"event": "call.completed", "call_id": "c_fuzz", "data": {}},
    )
    logs = event["data"].get("logs") or [{}]
    log_id = logs[0].get("log_id", str(uuid.uuid4()))
    return Ids(agent_id=agent_id, webhook_id=webhook_id, log_id=log_id, call_id="c_fuzz")


class Ids(dict):
    """Path parameters: the real ids, and a fresh UUID for any other."""

    def __missing__(self, key):
        return str(uuid.uuid4())


def resolve(schema, document):
    while isinstance(schema, dict) and "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        schema = document["components"]["schemas"][name]
    if isinstance(schema, dict):
        for combinator in ("allOf", "oneOf", "anyOf"):
            if combinator in schema:
                options = [resolve(s, document) for s in schema[combinator]]
                non_null = [o for o in options if o.get("type") != "null"]
                if combinator == "allOf":
                    merged = {"type": "object", "properties": {}}
                    for option in options:
                        merged["properties"].update(option.get("properties", {}))
                    return merged
                return non_null[0] if non_null else options[0]
    return schema or {}


def sample(schema, document, depth=0):
    """A plausible value for `schema`, with a path → setter for every string in it."""
    schema = resolve(schema, document)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "string")
    if "enum" in schema:
        return schema["enum"][0]
    if kind == "object" or "properties" in schema:
        if depth > 4:
            return {}
        return {
            name: sample(prop, document, depth + 1)
            for name, prop in schema.get("properties", {}).items()
        }
    if kind == "array":
        return [sample(schema.get("items", {}), document, depth + 1)]
    if kind in ("integer", "number"):
        return schema.get("minimum", 1)
    if kind == "boolean":
        return False
    fmt = schema.get("format")
    if fmt == "uri" or "url" in str(schema.get("description", "")).lower():
        return "https://example.com/h"
    if fmt == "uuid":
        return str(uuid.uuid4())
    if fmt == "date-time":
        return "2024-01-15T11:30:00Z"
    return "x"


def string_paths(value, prefix=()):
    if isinstance(value, str):
        yield prefix
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from string_paths(item, prefix + (key,))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from string_paths(item, prefix + (index,))


def with_nul(value, path):
    if not path:
        return NUL
    copy = json.loads(json.dumps(value))
    target = copy
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = NUL
    return copy


def main():
    connection = http.client.HTTPConnection(HOST, timeout=30)
    connection.request("GET", "/openapi.json")
    document = json.loads(connection.getresponse().read())
    ids = setup_ids()
    operations = [
        (path, method.upper(), operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method in ("get", "put", "post", "patch", "delete")
    ]
    for template, method, operation in operations:
        concrete = template.format_map(ids)
        parameters = operation.get("parameters", [])
        if method != "DELETE":
            for parameter in parameters:
                name = urllib.parse.quote(parameter["name"])
                if parameter.get("in") == "query":
                    request(method, f"{concrete}?{name}={urllib.parse.quote(NUL)}")
                elif parameter.get("in") == "path":
                    nul_id = Ids(ids, **{parameter["name"]: urllib.parse.quote(NUL)})
                    request(method, template.format_map(nul_id))
            content = (operation.get("requestBody") or {}).get("content", {})
            schema = content.get("application/json", {}).get("schema")
            if schema is not None:
                body = sample(schema, document)
                for path in list(string_paths(body)) or [()]:
                    request(method, concrete, with_nul(body, path))
        for unknown in UNKNOWN_METHODS:
            request(unknown, concrete)
            request(unknown, concrete, auth=False)
    for unknown in UNKNOWN_METHODS:
        request(unknown, "/no/such/path")
    _, metrics = request("GET", "/metrics")
    for unknown in UNKNOWN_METHODS:
        if unknown != "get" and f'method="{unknown}"' in str(metrics):
            failures.append(f"/metrics has a series for the method {unknown[:20]}")
    print(f"fuzz-extra: {sent} requests, {len(failures)} failures")
    for failure in failures[:50]:
        print("  " + failure)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
