"""The control tables in the PostgreSQL dialect, in their own schema so they never mix with user tables."""

SCHEMA = "spanbench"

DDL = f"""
CREATE SCHEMA IF NOT EXISTS {SCHEMA};

CREATE TABLE IF NOT EXISTS {SCHEMA}.run_status (
    run_id           text PRIMARY KEY,
    status           text NOT NULL,
    phase            text,
    scenario         jsonb NOT NULL,
    traceparent      text,
    workers_expected integer NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    start_time       timestamptz,
    warmup_start     timestamptz,
    measurement_start timestamptz,
    measurement_end  timestamptz,
    end_time         timestamptz,
    updated_at       timestamptz NOT NULL DEFAULT now(),
    next_seq         bigint NOT NULL DEFAULT 0,
    cancel_reason    text
);

CREATE TABLE IF NOT EXISTS {SCHEMA}.run_control_events (
    run_id     text NOT NULL,
    seq        bigint NOT NULL,
    type       text NOT NULL,
    scope      text NOT NULL,
    payload    jsonb NOT NULL DEFAULT '{{}}',
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (run_id, seq)
);

CREATE TABLE IF NOT EXISTS {SCHEMA}.worker_heartbeats (
    run_id             text NOT NULL,
    worker_id          text NOT NULL,
    group_id           integer NOT NULL,
    status             text NOT NULL,
    phase              text,
    last_beat          timestamptz NOT NULL DEFAULT now(),
    active_connections integer NOT NULL DEFAULT 0,
    target_connections integer NOT NULL DEFAULT 0,
    queries            bigint NOT NULL DEFAULT 0,
    errors             bigint NOT NULL DEFAULT 0,
    last_error         text,
    pid                integer,
    host               text,
    PRIMARY KEY (run_id, worker_id)
);

CREATE TABLE IF NOT EXISTS {SCHEMA}.test_results (
    run_id              text NOT NULL,
    worker_id           text NOT NULL,
    scope               text NOT NULL,
    status              text NOT NULL,
    started_at          timestamptz,
    ended_at            timestamptz,
    queries             bigint NOT NULL DEFAULT 0,
    errors              bigint NOT NULL DEFAULT 0,
    qps                 double precision NOT NULL DEFAULT 0,
    measurement_seconds double precision NOT NULL DEFAULT 0,
    latency             jsonb NOT NULL DEFAULT '{{}}',
    histograms          jsonb NOT NULL DEFAULT '{{}}',
    details             jsonb NOT NULL DEFAULT '{{}}',
    PRIMARY KEY (run_id, worker_id)
);

CREATE TABLE IF NOT EXISTS {SCHEMA}.template_value_pools (
    pool_name  text NOT NULL,
    ordinal    integer NOT NULL,
    value      jsonb NOT NULL,
    PRIMARY KEY (pool_name, ordinal)
);
"""
