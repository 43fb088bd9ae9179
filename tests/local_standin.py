"""A stand-in for `python -m worker.local.serve`, to test the server's lifecycle in worker/local/
without a model: `python tests/local_standin.py MODE PORT`.

MODE: `ready-after:S` answers GET /v1/models with 503 for S seconds, then 200;
`exit:CODE:TEXT` prints TEXT and exits; `never` listens and never answers 200;
`orphan-test:PARENT_MODE` is not a server: it starts a stand-in through LocalServer, prints the
server's pid, and waits to be killed (to test what happens to a server whose askbatch dies).
"""

from __future__ import annotations

import json
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


def serve(port: int, ready_at: float) -> None:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            ok = self.path == "/v1/models" and time.monotonic() >= ready_at
            body = json.dumps({"object": "list", "data": [{"id": "standin"}]}).encode()
            self.send_response(200 if ok else 503)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    print(f"stand-in listening on {port}", flush=True)
    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


def orphan_test(mode: str, model: str, log_dir: str) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from tests.test_local import StandIn

    server = StandIn(mode, Path(model), log_dir=Path(log_dir))
    server.start(timeout_s=60)
    print(f"server pid {server.proc.pid} port {server.port}", flush=True)
    time.sleep(600)


def main() -> None:
    mode, arg = sys.argv[1], sys.argv[2]
    if mode.startswith("orphan-test:"):
        orphan_test(mode.split(":", 1)[1], arg, sys.argv[3])
        return
    port = int(arg)
    if mode.startswith("ready-after:"):
        serve(port, time.monotonic() + float(mode.split(":")[1]))
    elif mode.startswith("exit:"):
        _, code, text = mode.split(":", 2)
        print(text, flush=True)
        sys.exit(int(code))
    elif mode == "never":
        serve(port, float("inf"))
    else:
        sys.exit(f"unknown mode {mode}")


if __name__ == "__main__":
    main()
