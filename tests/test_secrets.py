"""Secrets (passwords, OTLP headers) never reach spans, logs, control tables or reports."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import asyncpg

from conftest import run_cli, spanbench_env


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_no_secret_anywhere(pg_dsn: str, password_role: tuple[str, str, str], tmp_path: Path) -> None:
    socket_dir, user, password = password_role
    dsn = f"postgresql://{user}:{password}@/postgres?host={socket_dir}"
    token = "Bearer otlp-t0ken-" + password[-8:]
    env = spanbench_env(
        SPANBENCH_TRACING="1",
        OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{closed_port()}",
        OTEL_EXPORTER_OTLP_HEADERS=f"authorization={token.replace(' ', '%20')}",
    )
    res = run_cli(["run", "--target-dsn", dsn, "--workers", "2", "--connections", "4", "--warmup", "0.2s",
                   "--duration", "0.5s"], output=tmp_path, env=env)
    assert res.returncode == 0, res.stderr
    run_dir = res.run_dir()
    secrets = [password, "otlp-t0ken"]

    texts = {"stdout": res.stdout, "stderr": res.stderr}
    for f in run_dir.rglob("*"):
        if f.is_file():
            texts[f.name] = f.read_text(errors="replace")
    assert any(name.startswith("trace-") for name in texts)  # the trace is among what was searched

    async def control_rows() -> str:
        conn = await asyncpg.connect(pg_dsn)
        try:
            parts = []
            for table in ("run_status", "run_control_events", "worker_heartbeats", "test_results"):
                rows = await conn.fetch(f"SELECT row_to_json(t)::text AS j FROM spanbench.{table} t WHERE run_id = $1",
                                        run_dir.name)
                assert rows, table
                parts += [r["j"] for r in rows]
            return "\n".join(parts)
        finally:
            await conn.close()

    texts["control tables"] = asyncio.run(control_rows())
    assert user in texts["control tables"]  # the redacted DSN is there, the password is not
    for where, text in texts.items():
        for secret in secrets:
            assert secret not in text, f"secret found in {where}"
