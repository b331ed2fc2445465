"""A minimal OTLP/HTTP trace receiver for tests: POST /v1/traces with an ExportTraceServiceRequest
(protobuf, as the SDK's exporter sends it), one JSON line per span appended to a file.

    python tests/otlp_receiver.py --listen ::1 --port 4318 --out spans.jsonl

Each line: name, trace_id, span_id, parent_span_id (hex, "" for a root), kind, status code, the span's
attributes and its resource's attributes. Bodies are bounded (MAX_BODY_BYTES); anything else is 4xx.
"""

from __future__ import annotations

import argparse
import http.server
import json
import socket
import threading
from typing import Any

MAX_BODY_BYTES = 4 * 2**20


def _value(v: Any) -> Any:
    kind = v.WhichOneof("value")
    return getattr(v, kind) if kind in ("string_value", "bool_value", "int_value", "double_value") else str(v)


def spans_of(body: bytes) -> list[dict[str, Any]]:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    req = ExportTraceServiceRequest()
    req.ParseFromString(body)
    out = []
    for rs in req.resource_spans:
        resource = {a.key: _value(a.value) for a in rs.resource.attributes}
        for ss in rs.scope_spans:
            for s in ss.spans:
                out.append({"name": s.name, "trace_id": s.trace_id.hex(), "span_id": s.span_id.hex(),
                            "parent_span_id": s.parent_span_id.hex(), "kind": int(s.kind),
                            "status": int(s.status.code), "scope": ss.scope.name,
                            "attributes": {a.key: _value(a.value) for a in s.attributes}, "resource": resource})
    return out


class Receiver(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, listen: str, port: int, out: str | None = None) -> None:
        self.address_family = socket.AF_INET6 if ":" in listen else socket.AF_INET
        self.spans: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.out = out
        super().__init__((listen, port), _Handler)

    def add(self, spans: list[dict[str, Any]]) -> None:
        with self.lock:
            self.spans.extend(spans)
            if self.out:
                with open(self.out, "a") as f:
                    f.writelines(json.dumps(s) + "\n" for s in spans)

    def start(self) -> Receiver:
        threading.Thread(target=self.serve_forever, daemon=True).start()
        return self

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://[{host}]:{port}/v1/traces" if ":" in host else f"http://{host}:{port}/v1/traces"


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        length = int(self.headers.get("Content-Length") or 0)
        if self.path != "/v1/traces" or not 0 < length <= MAX_BODY_BYTES:
            self.send_error(404 if self.path != "/v1/traces" else 413)
            return
        if "protobuf" not in (self.headers.get("Content-Type") or ""):
            self.send_error(415)
            return
        try:
            spans = spans_of(self.rfile.read(length))
        except Exception:  # noqa: BLE001 - a bad body is the sender's problem
            self.send_error(400)
            return
        self.server.add(spans)  # type: ignore[attr-defined]
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

        body = ExportTraceServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--listen", default="::1")
    ap.add_argument("--port", type=int, default=4318)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    Receiver(args.listen, args.port, args.out).serve_forever()


if __name__ == "__main__":
    main()
