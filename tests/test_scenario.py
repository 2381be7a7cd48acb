"""The scenario model and what a worker draws from it: domains, distributions, shards, the mix."""

from __future__ import annotations

import random
import uuid
from collections import Counter
from datetime import datetime, timezone

import pytest

from spanbench.errors import ConfigError
from spanbench.scenario import Workload, problems
from spanbench.settings import Settings, build_settings
from spanbench.sql import access_of, placeholders
from spanbench.workload.demo import demo_workload
from spanbench.workload.params import draw, pool_shard, zipf, zipf_share
from spanbench.workload.plan import build_args, plan_mix, query_specs, smooth_wrr
from spanbench.workload.setup import build_plan


def workload(**params: dict) -> Workload:
    names = list(params)
    sql = "SELECT " + ", ".join(f"${i + 1}" for i in range(len(names)))
    return Workload(queries=[{"name": "q", "sql": sql, "params": names}], params=params)


def values(spec: dict, n: int = 20_000, **kw: object) -> list:
    w = workload(p=spec)
    return draw(w.params["p"], n, random.Random(7), **kw)


def test_int_uniform_covers_its_range_evenly() -> None:
    v = values({"kind": "int", "min": 10, "max": 19})
    assert set(v) == set(range(10, 20))
    counts = Counter(v)
    assert max(counts.values()) / min(counts.values()) < 1.2  # 2000 expected each


def test_int_sequential_walks_and_wraps_and_workers_start_apart() -> None:
    spec = {"kind": "int", "min": 1, "max": 100, "distribution": "sequential"}
    assert values(spec, 5) == [1, 2, 3, 4, 5]
    assert values(spec, 102)[98:] == [99, 100, 1, 2]
    assert values(spec, 3, group=1, groups=2) == [51, 52, 53]


@pytest.mark.parametrize("s", [0.8, 1.0, 1.2])
def test_zipf_skew_matches_its_exponent(s: float) -> None:
    n_keys, n = 10_000, 100_000
    v = zipf(1, n_keys, s, n, random.Random(11))
    assert min(v) >= 1 and max(v) <= n_keys
    counts = Counter(v)
    assert counts[1] == max(counts.values())  # rank 1 is min, the most drawn
    top = sum(counts[k] for k in range(1, n_keys // 100 + 1)) / n  # share of the top 1 % of keys
    expected = zipf_share(n_keys, s, n_keys // 100)
    assert abs(top - expected) < 0.02, (s, top, expected)
    # and the ratio of the first two ranks is 2^s
    assert abs(counts[1] / counts[2] - 2 ** s) < 0.15 * 2 ** s


def test_zipf_steeper_exponent_is_more_skewed() -> None:
    flat = Counter(zipf(1, 1000, 0.5, 50_000, random.Random(1)))[1]
    steep = Counter(zipf(1, 1000, 1.5, 50_000, random.Random(1)))[1]
    assert steep > 5 * flat


def test_choice_string_uuid_timestamp_domains() -> None:
    assert set(values({"kind": "choice", "values": ["a", 2, 3.5]})) == {"a", 2, 3.5}
    strings = values({"kind": "string", "length": 12}, 100)
    assert all(len(x) == 12 and x.isalnum() for x in strings) and len(set(strings)) == 100
    uuids = values({"kind": "uuid"}, 100)
    assert all(uuid.UUID(x).version == 4 for x in uuids) and len(set(uuids)) == 100
    before = datetime.now(timezone.utc)
    stamps = values({"kind": "timestamp", "spread": "1h"}, 1000)
    assert all(before.timestamp() - 3601 <= t.timestamp() <= datetime.now(timezone.utc).timestamp() for t in stamps)
    assert max(stamps) - min(stamps) > (datetime.now(timezone.utc) - before)  # spread, not all "now"
    assert all(t.tzinfo is not None for t in stamps)


def test_pool_shards_are_disjoint_across_groups_and_cover_the_pool() -> None:
    pool = list(range(1000, 1100))
    shards = [set(pool_shard(pool, g, 4)) for g in range(4)]
    assert all(len(s) == 25 for s in shards)
    assert set().union(*shards) == set(pool)
    for a in range(4):
        for b in range(a + 1, 4):
            assert not shards[a] & shards[b]
    # what each worker draws stays in its shard
    drawn = [set(values({"kind": "pool", "column": "t.c"}, 2000, group=g, groups=4, pool=pool)) for g in range(4)]
    assert all(d <= s for d, s in zip(drawn, shards))
    # a pool smaller than the workers: one value each, shared only then
    assert [pool_shard([7, 8], g, 3) for g in range(3)] == [[7], [8], [7]]


def test_smooth_weighted_round_robin_is_exact_and_spread() -> None:
    cycle = smooth_wrr([90, 10])
    assert len(cycle) == 10 and cycle.count(1) == 1
    cycle = smooth_wrr([5, 3, 2])
    assert Counter(cycle) == {0: 5, 1: 3, 2: 2}
    assert all(cycle[i] != cycle[i + 1] or cycle[i] == 0 for i in range(len(cycle) - 1))  # no burst of a light kind
    assert smooth_wrr([5, 3, 2]) == cycle  # deterministic
    mix = plan_mix([95, 5], 1000)
    assert len(mix) % 20 == 0 and mix.count(1) * 20 == len(mix)


def test_a_transaction_sees_one_draw_per_execution() -> None:
    w = Workload(queries=[
        {"name": "t", "transaction": [{"sql": "UPDATE a SET x = x + $1 WHERE id = $2", "params": ["d", "id"]},
                                      {"sql": "SELECT x FROM a WHERE id = $1", "params": ["id"]}]},
        {"name": "r", "weight": 3, "sql": "SELECT x FROM a WHERE id = $1", "params": ["id"]},
    ], params={"id": {"kind": "int", "min": 1, "max": 10**9}, "d": {"kind": "int", "min": -5, "max": 5}})
    mix = plan_mix([1, 3], 400)

    def gen(name: str, n: int) -> list:
        return draw(w.params[name], n, random.Random(name))

    args = build_args(w, mix, gen)
    assert len(args) == len(mix)
    ids = []
    for k, a in zip(mix, args):
        if k == 0:
            (d, id1), (id2,) = a
            assert id1 == id2 and -5 <= d <= 5  # the same id in both statements
            ids.append(id1)
        else:
            (i,) = a
            ids.append(i)
    assert len(set(ids)) > 0.99 * len(ids)  # every execution drew its own


def test_plan_is_deterministic_per_seed() -> None:
    w = workload(a={"kind": "int", "min": 1, "max": 1000}, b={"kind": "uuid"})
    p1 = build_plan(w, seed_text="run/w0", group=0, groups=2, ranges={}, pools={}, length=500)
    p2 = build_plan(w, seed_text="run/w0", group=0, groups=2, ranges={}, pools={}, length=500)
    p3 = build_plan(w, seed_text="run/w1", group=1, groups=2, ranges={}, pools={}, length=500)
    assert p1.args == p2.args and p1.args != p3.args


def test_placeholders_per_dialect() -> None:
    assert placeholders("SELECT $1, $2 FROM t WHERE s = '$3' -- $4", "postgresql") == (2, None)
    assert placeholders("SELECT $2", "postgresql")[1] == "placeholder $1 is missing (the highest is $2)"
    assert placeholders("SELECT ? FROM t WHERE a = '?'", "snowflake") == (1, None)
    assert "Snowflake takes ?" in placeholders("SELECT $1", "snowflake")[1]
    assert "PostgreSQL takes" in placeholders("SELECT ?", "postgresql")[1]
    assert access_of("select 1") == "READ" and access_of("UPDATE t SET a = 1") == "WRITE"
    assert access_of("WITH x AS (DELETE FROM t RETURNING *) SELECT * FROM x") == "WRITE"


def test_problems_name_the_query() -> None:
    w = Workload(queries=[{"name": "a", "sql": "SELECT $1, $2", "params": ["x"]},
                          {"name": "b", "sql": "SELECT $1", "params": ["nope"]}],
                 params={"x": {"kind": "int", "min": 1, "max": 2}})
    assert problems(w, "postgresql") == [
        "query 'a': 2 placeholder(s) in the SQL but 1 param(s) given",
        "query 'b': unknown param 'nope' (no [params.nope])",
    ]


def test_specs_carry_operation_and_access() -> None:
    specs = query_specs(demo_workload("postgresql"), "postgresql")
    assert [(s.kind, s.operation, s.access, s.collection) for s in specs] == [
        ("point_select", "SELECT", "READ", "spanbench_accounts"), ("update", "UPDATE", "WRITE", "spanbench_accounts")]
    w = Workload(queries=[{"name": "t", "operation": "READ", "transaction": [{"sql": "SELECT 1"}, {"sql": "SELECT 2"}]}])
    (t,) = query_specs(w, "postgresql")
    assert t.is_transaction and t.operation == "TRANSACTION" and t.sql == "SELECT 1; SELECT 2" and t.access == "READ"
    assert [q.name for q in demo_workload("snowflake", point_select_only=True).queries] == ["point_select"]
    assert "?" in demo_workload("snowflake").queries[0].sql


def test_scenario_file_keys_reach_settings_and_bad_ones_are_one_line(tmp_path) -> None:
    path = tmp_path / "s.toml"
    path.write_text('version = 1\nworkers = 3\n[[queries]]\nname = "q"\nsql = "SELECT $1"\nparams = ["a"]\n'
                    '[params.a]\nkind = "int"\nmin = 1\nmax = 5\n')
    s = build_settings(path)
    assert s.workers == 3 and s.workload is not None and s.workload.kinds == ["q"]
    assert Settings(**s.public()).workload == s.workload  # what RUN_STATUS carries to the workers
    path.write_text('version = 1\n[[queries]]\nname = "q"\nsql = "SELECT $1"\nparams = ["a"]\n')
    with pytest.raises(ConfigError, match="unknown param 'a'") as err:
        build_settings(path)
    assert "\n" not in str(err.value)
    path.write_text('[[queries]]\nname = "q"\nsql = "SELECT 1"\n')
    with pytest.raises(ConfigError, match="needs version = 1"):
        build_settings(path)
