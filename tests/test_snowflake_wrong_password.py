"""A wrong Snowflake password: one line, non-zero, no secret.

fakesnow checks no password, so this test stands up the one thing it needs on loopback: a
login endpoint that refuses the login with the response Snowflake sends for bad credentials
(code 390100). The real connector talks HTTP to it and takes its real error path.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from conftest import run_cli, spanbench_env

REFUSAL = {
    "data": {"nextAction": "RETRY_LOGIN", "authnMethod": "USERNAME_PASSWORD", "loginName": None, "requestId": None,
             "signInOptions": {}},
    "code": "390100",
    "message": "Incorrect username or password was specified.",
    "success": False,
    "headers": None,
}


class _RefuseLogin(BaseHTTPRequestHandler):
    logins = 0

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path.startswith("/session/v1/login-request"):
            type(self).logins += 1
            body = json.dumps(REFUSAL).encode()
        else:
            body = json.dumps({"success": False, "code": "390112", "message": "not logged in", "data": None}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_wrong_password_is_one_line_and_non_zero(tmp_path: Path) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _RefuseLogin)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        port = server.server_address[1]
        dsn = f"snowflake://bench:Wr0ng-passw0rd@acct/DB/PUBLIC?host=127.0.0.1&port={port}&protocol=http"
        res = run_cli(["run", "--target-dsn", dsn, "--workers", "1", "--connections", "1", "--duration", "1s"],
                      output=tmp_path, env=spanbench_env(SPANBENCH_CONNECT_TIMEOUT="5s"), timeout=120)
    finally:
        server.shutdown()
    assert _RefuseLogin.logins >= 1  # the connector really logged in, and was refused
    assert res.returncode == 1
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in res.stderr, res.stderr
    assert "Incorrect username or password" in lines[0]
    assert "Wr0ng-passw0rd" not in res.stderr + res.stdout
