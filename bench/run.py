"""`make bench`: the service's speed, measured under gunicorn with production settings.

Sets up a benchmark database (BENCH_DATABASE_URL, else the embedded PostgreSQL
under instance/pgbench) with the three seed tenants plus 100 more, starts the
service under gunicorn (APP_ENV=production, BCRYPT_ROUNDS=12, gunicorn.conf.py as
shipped) and, in the same run, the floor app (bench/floor_app.py: Flask + psycopg
pool + PyJWT doing the same database work), then prints a table and one JSON line:

* bcrypt: one verification at cost 12, alone, in this process;
* login: sequential p50; 100 concurrent logins of 100 different tenants (wall
  time, p50, p95, successes) beside the ideal 100 x bcrypt / cores;
* refresh: sequential p50;
* GET /api/v1/tenants/me and /tenants/me/admins at 32 concurrent connections
  with wrk (Debian's package): throughput, p50, p99, for the service and the
  floor, and their ratios.

Ratios against a floor measured in the same run keep the figures meaningful on a
noisy machine. Only 127.0.0.1 is used. BENCH_SETUP picks the database setup:
plain (the default), pgbouncer (a PgBouncer in transaction mode between both apps
and PostgreSQL) or citus (a Citus cluster of its own, a coordinator and two
workers); docs/scaling.md.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import bcrypt
import psycopg
import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
BIN = Path(sys.executable).parent
EXTRA_TENANTS = 100
# Random: production refuses a seed password written in the repository.
PASSWORD = secrets.token_urlsafe(16)
WRK_SECONDS = int(os.environ.get("BENCH_WRK_SECONDS", 5))
# The service and the floor take turns, this many times each: this machine's speed
# drifts by tens of percent within a minute, so one long run of each would
# compare two different machines.
WRK_ROUNDS = int(os.environ.get("BENCH_WRK_ROUNDS", 3))
WRK_CONNECTIONS = 32
# The database setup (module docstring), and for pgbouncer its server
# connections per role, fewer than the clients.
SETUP = os.environ.get("BENCH_SETUP", "plain")
if SETUP not in ("plain", "pgbouncer", "citus"):
    raise SystemExit(f"BENCH_SETUP must be plain, pgbouncer or citus, got {SETUP!r}")
PGBOUNCER_POOL_SIZE = 8


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


class Server:
    def __init__(self, app: str, env: dict[str, str], options: tuple[str, ...] | None = None) -> None:
        """`options`: gunicorn's command-line settings instead of gunicorn.conf.py."""
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tempfile.NamedTemporaryFile(prefix="bench-", suffix=".log", delete=False)
        settings = (
            ["-c", str(ROOT / "gunicorn.conf.py")] if options is None else [*options, "-b", f"127.0.0.1:{self.port}"]
        )
        self.process = subprocess.Popen(
            [str(BIN / "gunicorn"), *settings, app],
            cwd=ROOT,
            env={**env, "PORT": str(self.port), "HOST": "127.0.0.1"},
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if requests.get(self.url + "/health", timeout=5).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.2)
        output = Path(self.log.name).read_text()
        self.stop()
        raise RuntimeError(f"{app} did not start:\n{output}")

    def worker_rss_mb(self) -> list[float]:
        """Resident memory of each worker process, in MB."""
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children").read_text().split()
        sizes = []
        for pid in children:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    sizes.append(int(line.split()[1]) / 1024)
        return sizes

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=30)
        self.log.close()
        Path(self.log.name).unlink(missing_ok=True)


def citus_database() -> str:
    """BENCH_SETUP=citus: the database on a Citus cluster of the bench's own (the test
    lane's, tests/citus_cluster.py: a coordinator and two workers), stopped when
    the bench ends; the service and the floor both talk to the coordinator."""
    import atexit

    sys.path.insert(0, str(ROOT))
    from tests.citus_cluster import CitusCluster, citus_installed

    problem = citus_installed()
    if problem:
        sys.exit(f"BENCH_SETUP=citus needs Citus: {problem}")
    cluster = CitusCluster(Path("/tmp/wafaa-citus-bench"))
    cluster.create()
    atexit.register(cluster.stop)
    cluster.start()
    return cluster.create_database("wafaa_bench")


def database() -> str:
    if SETUP == "citus":
        return citus_database()
    url = os.environ.get("BENCH_DATABASE_URL")
    if url:
        maintenance, name = url.rsplit("/", 1)[0] + "/postgres", url.rsplit("/", 1)[1].split("?")[0]
    else:
        sys.path.insert(0, str(ROOT / "scripts"))
        from embedded_pg import start

        base = start((ROOT / "instance" / "pgbench").resolve(), "postgres", cleanup_mode="stop")
        maintenance, name = base, "wafaa_bench"
    with psycopg.connect(maintenance, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    if url:
        return url
    head, _, query = maintenance.partition("?")
    return head.rsplit("/", 1)[0] + f"/{name}" + (f"?{query}" if query else "")


def production_env(database_url: str) -> dict[str, str]:
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith(("APP_", "TEST_"))},
        "APP_ENV": "production",
        "DATABASE_URL": database_url,
        "SECRET_KEY": secrets.token_urlsafe(48),
        "JWT_SECRET_KEY": secrets.token_urlsafe(48),
        "BCRYPT_ROUNDS": "12",
        "SEED_ADMIN_PASSWORD": PASSWORD,
        "CORS_ORIGINS": '["https://app.example.com"]',
        "LOG_LEVEL": "INFO",  # production default: the access line is part of the cost
        # The limiter stays on (its cost is part of every request), with limits
        # no benchmark run can reach.
        "RATELIMIT_LOGIN_PER_IP": "1000000/minute",
        "RATELIMIT_LOGIN_PER_ACCOUNT": "1000000/minute",
        "RATELIMIT_REFRESH_PER_IP": "1000000/minute",
        "RATELIMIT_AUTHENTICATED": "1000000/minute",
        # Production refuses per-worker counters with several workers.
        "RATELIMIT_STORAGE_URI": redis_url(),
        # The flood comes from many addresses, named by X-Forwarded-For.
        "TRUSTED_PROXY_COUNT": "1",
    }


def redis_url() -> str:
    """BENCH_REDIS_URL, else database 13 of the Redis on 127.0.0.1:6379, emptied."""
    import redis

    url = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/13")
    client = redis.Redis.from_url(url, socket_connect_timeout=1)
    try:
        client.flushdb()
    except redis.RedisError as error:
        sys.exit(f"the benchmark needs a Redis (production refuses memory:// with several workers): {url}: {error}")
    finally:
        client.close()
    return url


def prepare(env: dict[str, str], superuser: str) -> list[str]:
    """Migrate, seed, add 100 tenants with an owner each; return their emails."""
    flask = [str(BIN / "flask"), "--app", "wsgi"]
    subprocess.run([*flask, "db", "upgrade"], cwd=ROOT, env=env, check=True, capture_output=True)
    if SETUP == "citus":
        subprocess.run([*flask, "citus", "distribute"], cwd=ROOT, env=env, check=True, capture_output=True)
    subprocess.run([*flask, "seed", "--force"], cwd=ROOT, env=env, check=True, capture_output=True)
    password_hash = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(12)).decode()
    emails = [f"owner@bench-{n:03d}.example.com" for n in range(EXTRA_TENANTS)]
    with psycopg.connect(superuser, autocommit=True) as conn, conn.transaction():
        for n, email in enumerate(emails):
            tenant_id = uuid.uuid4()
            # The slug and the email registered first (wafaa/models/registry.py).
            conn.execute("INSERT INTO tenant_slugs (slug, tenant_id) VALUES (%s, %s)", (f"bench-{n:03d}", tenant_id))
            conn.execute("INSERT INTO admin_emails (email, tenant_id) VALUES (%s, %s)", (email, tenant_id))
            conn.execute(
                "INSERT INTO tenants (id, name, slug) VALUES (%s, %s, %s)",
                (tenant_id, f"Bench {n}", f"bench-{n:03d}"),
            )
            conn.execute(
                "INSERT INTO tenant_admins (tenant_id, email, full_name, role, password_hash)"
                " VALUES (%s, %s, %s, 'owner', %s)",
                (tenant_id, email, f"Bench Owner {n}", password_hash),
            )
    return emails


def login(url: str, email: str, retry: bool = False) -> tuple[float, dict | None, int]:
    """(seconds, tokens or None, retries)."""
    started, retries = time.perf_counter(), 0
    while True:
        response = requests.post(f"{url}/api/v1/auth/login", json={"email": email, "password": PASSWORD}, timeout=120)
        if not (retry and response.status_code == 503):
            break
        retries += 1
        time.sleep(int(response.headers.get("Retry-After", "1")))
    elapsed = time.perf_counter() - started
    return elapsed, response.json() if response.status_code == 200 else None, retries


def bcrypt_once(password_hash: bytes) -> float:
    started = time.perf_counter()
    bcrypt.checkpw(PASSWORD.encode(), password_hash)
    return time.perf_counter() - started


def wrk(url: str, path: str, token: str, connections: int = WRK_CONNECTIONS, seconds: int = WRK_SECONDS) -> dict:
    script = tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False)
    script.write(f'wrk.headers["Authorization"] = "Bearer {token}"\n')
    script.close()
    output = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", script.name, url + path],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    os.unlink(script.name)
    return parse_wrk(output)


FLOOD_CONNECTIONS = 200
FLOOD_SECONDS = int(os.environ.get("BENCH_FLOOD_SECONDS", 10))
FLOOD_WARMUP = 4
FLOOD_ROUNDS = int(os.environ.get("BENCH_FLOOD_ROUNDS", 3))
# Logins of unknown emails, each from its own address (X-Forwarded-For, believed
# behind TRUSTED_PROXY_COUNT=1; 198.18.0.0/15 is the benchmarking range, and no
# packet goes there: it is only a header). A per-thread counter keeps them apart.
FLOOD_SCRIPT = """
local thread_id = 0
local counter = 0
setup = function(thread) thread_id = thread_id + 1; thread:set("id", thread_id) end
request = function()
  counter = counter + 1
  local address = string.format("198.18.%d.%d", math.floor(counter / 250) % 250, counter % 250 + 1)
  local body = string.format('{"email": "flood-%d-%d@nowhere.example.com", "password": "guess-%d"}',
    id or 0, counter, counter)
  return wrk.format("POST", "/api/v1/auth/login",
    {["Content-Type"] = "application/json", ["X-Forwarded-For"] = address}, body)
end
"""


def flood(url: str, token: str) -> dict:
    """GET /tenants/me from one client, idle and then during a flood of
    FLOOD_CONNECTIONS concurrent unknown-email logins from many addresses (timed
    once the flood has reached its steady state: every connection has had a
    login answered). Idle and flood take FLOOD_ROUNDS turns, like the other
    figures, and the medians are reported: one stall of this machine moves a
    single p99 by several times."""
    script = tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False)
    script.write(FLOOD_SCRIPT)
    script.close()
    rounds = []
    for _ in range(FLOOD_ROUNDS):
        idle = wrk(url, "/api/v1/tenants/me", token, connections=1, seconds=FLOOD_SECONDS)
        flooding = subprocess.Popen(
            ["wrk", "-t2", f"-c{FLOOD_CONNECTIONS}", f"-d{FLOOD_SECONDS + FLOOD_WARMUP + 2}s", "-s", script.name, url],
            stdout=subprocess.PIPE,
            text=True,
        )
        time.sleep(FLOOD_WARMUP)
        during = wrk(url, "/api/v1/tenants/me", token, connections=1, seconds=FLOOD_SECONDS)
        logins = parse_wrk(flooding.communicate(timeout=FLOOD_SECONDS + 60)[0])
        ratio = during["p99_ms"] / idle["p99_ms"]
        rounds.append({"idle": idle, "during": during, "p99_ratio": ratio, "logins": logins})
        time.sleep(FLOOD_WARMUP)  # the held logins drain
    os.unlink(script.name)
    return {
        "idle_p99_ms": statistics.median(r["idle"]["p99_ms"] for r in rounds),
        "during_p99_ms": statistics.median(r["during"]["p99_ms"] for r in rounds),
        "p99_ratio": statistics.median(r["p99_ratio"] for r in rounds),
        "flood_rps": statistics.median(r["logins"]["rps"] for r in rounds),
        "flood_non_2xx": sum(r["logins"]["errors"] for r in rounds),
        "rounds": rounds,
    }


def parse_wrk(output: str) -> dict:
    def latency_ms(label: str) -> float:
        match = re.search(rf"^\s+{label}%\s+([\d.]+)(us|ms|s)\s*$", output, re.MULTILINE)
        if match is None:
            return float("nan")
        value, unit = float(match.group(1)), match.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1)),
        "p50_ms": latency_ms("50"),
        "p99_ms": latency_ms("99"),
        "errors": int(non_2xx.group(1)) if non_2xx else 0,
    }


PAGES = (
    ("/api/v1/tenants/me", "tenant_me"),
    ("/api/v1/tenants/me/admins", "admins"),
    ("/api/v1/tenants/me/audit-logs", "audit_logs"),
)


def floor_servers(floor_env: dict[str, str], cores: int) -> dict[str, Server]:
    """The floor in three worker layouts: bare sync workers; sync workers under
    gunicorn.conf.py, which pins each worker to a CPU where the service's are
    (wafaa.cpu_affinity); and the service's own gthread settings."""
    conf = str(ROOT / "gunicorn.conf.py")
    return {
        "sync": Server("bench.floor_app:app", floor_env, ("-k", "sync", "-w", str(cores), "--log-level", "warning")),
        # --threads 1: with more threads, gunicorn turns a sync worker into gthread.
        "sync-conf": Server(
            "bench.floor_app:app", floor_env, ("-c", conf, "-k", "sync", "--threads", "1", "-w", str(cores))
        ),
        "gthread": Server("bench.floor_app:app", floor_env),
    }


def compare_pages(service: Server, floors: dict[str, Server], path: str, access: str) -> dict:
    """The service and each floor layout taking turns on `path`, WRK_ROUNDS times."""
    rounds = [
        {"service": wrk(service.url, path, access)}
        | {layout: wrk(floor.url, path, access) for layout, floor in floors.items()}
        for _ in range(WRK_ROUNDS)
    ]
    return compare_with_floor(rounds)


def compare_with_floor(rounds: list[dict]) -> dict:
    """The service against the floor's best layout: the highest median
    throughput, and separately the lowest median p99. Each ratio is the median
    of the turns' ratios (the machine drifts between turns)."""
    layouts = [name for name in rounds[0] if name != "service"]
    medians = {name: median_run([turn[name] for turn in rounds]) for name in ["service", *layouts]}
    fastest = max(layouts, key=lambda name: medians[name]["rps"])
    steadiest = min(layouts, key=lambda name: medians[name]["p99_ms"])
    return {
        "service": medians["service"],
        "floor": {"rps": medians[fastest]["rps"], "p99_ms": medians[steadiest]["p99_ms"]},
        "floor_layouts": {"throughput": fastest, "p99": steadiest},
        "floor_medians": {name: medians[name] for name in layouts},
        "throughput_ratio": statistics.median(turn["service"]["rps"] / turn[fastest]["rps"] for turn in rounds),
        "p99_ratio": statistics.median(turn["service"]["p99_ms"] / turn[steadiest]["p99_ms"] for turn in rounds),
        "rounds": rounds,
    }


def median_run(runs: list[dict]) -> dict:
    """Median of each figure over the rounds."""
    return {name: statistics.median(run[name] for run in runs) for name in runs[0]}


def ensure_wrk() -> None:
    if shutil.which("wrk"):
        return
    if os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], check=True, capture_output=True)
        return
    sys.exit("wrk is required: apt-get install wrk (Debian) or your system's package")


def main() -> int:
    ensure_wrk()
    cores = os.cpu_count() or 1
    print(f"Preparing the benchmark database ({EXTRA_TENANTS} tenants beyond the seed)...", flush=True)
    # The service as production runs it: its unprivileged login role, the schema
    # owner only for the migrations (wafaa.db_roles). The floor reads as the
    # superuser: a floor has no row-level security to pay for.
    from wafaa.db_roles import bootstrap

    superuser = database()
    roles = bootstrap(superuser)
    emails = prepare({**production_env(roles.service), "MIGRATION_DATABASE_URL": roles.owner}, superuser)
    service_url, floor_url, bouncer = roles.service, superuser, None
    if SETUP == "pgbouncer":
        # The service and the floor both through one PgBouncer in transaction
        # mode (tests/pgbouncer.py), fewer server connections than clients;
        # the migrations above ran directly, as in production.
        from tests.pgbouncer import PgBouncer
        from wafaa.db_roles import DEFAULT_SERVICE

        bouncer = PgBouncer(superuser, users=[DEFAULT_SERVICE], pool_size=PGBOUNCER_POOL_SIZE).start()
        service_url, floor_url = bouncer.url(roles.service), bouncer.url(superuser)
    env = production_env(service_url)
    floor_env = {**env, "APP_ENV": "development", "DATABASE_URL": floor_url}
    if bouncer is not None:
        floor_env["FLOOR_PREPARE_THRESHOLD"] = "off"
    results: dict = {"cores": cores, "setup": SETUP}

    password_hash = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(12))
    service = Server("wsgi:app", env)
    floors: dict[str, Server] = {}
    try:
        only = os.environ.get("BENCH_ONLY")
        if only == "flood":  # a quick lane for working on the login gate
            fl = flood(service.url, login(service.url, "owner@acme.example.com")[1]["access_token"])
            print(json.dumps(fl, indent=1))
            return 0
        if only == "pages":  # a quick lane for working on the request path
            floors = floor_servers(floor_env, cores)
            access = login(service.url, "owner@acme.example.com")[1]["access_token"]
            pages = {key: compare_pages(service, floors, path, access) for path, key in PAGES}
            for key, page in pages.items():
                print(key, json.dumps({k: v for k, v in page.items() if k != "rounds"}))
            print("worker_rss_mb", service.worker_rss_mb())
            return 0
        # Sequential logins, after one warm-up per worker, each beside one bcrypt
        # check timed here: the machine's speed drifts, and the two move together.
        for _ in range(2):
            login(service.url, "owner@acme.example.com")
        checks, logins = [], []
        for _ in range(30):
            checks.append(bcrypt_once(password_hash))
            logins.append(login(service.url, "owner@acme.example.com")[0])
        results["bcrypt_verify_ms"] = statistics.median(checks) * 1000
        results["login_p50_ms"] = statistics.median(logins) * 1000

        # 100 logins of 100 different tenants, all at once; a login told to
        # retry (503, Retry-After: the login gate) does, as a client should.
        with ThreadPoolExecutor(max_workers=len(emails)) as pool:
            started = time.perf_counter()
            outcomes = list(pool.map(lambda email: login(service.url, email, retry=True), emails))
            wall = time.perf_counter() - started
        latencies = [elapsed for elapsed, _, _ in outcomes]
        results["concurrent_logins"] = {
            "wall_s": wall,
            "p50_ms": percentile(latencies, 50) * 1000,
            "p95_ms": percentile(latencies, 95) * 1000,
            "successes": sum(1 for _, tokens, _ in outcomes if tokens),
            "retries": sum(retries for _, _, retries in outcomes),
            "ideal_s": len(emails) * results["bcrypt_verify_ms"] / 1000 / cores,
        }
        results["concurrent_logins"]["efficiency"] = results["concurrent_logins"]["ideal_s"] / wall

        # Refresh: a chain of rotations.
        tokens = login(service.url, "admin@acme.example.com")[1]
        refresh_token, timings = tokens["refresh_token"], []
        for _ in range(50):
            started = time.perf_counter()
            response = requests.post(
                f"{service.url}/api/v1/auth/refresh", headers={"Authorization": f"Bearer {refresh_token}"}
            )
            timings.append(time.perf_counter() - started)
            refresh_token = response.json()["refresh_token"]
        results["refresh_p50_ms"] = statistics.median(timings) * 1000

        access = login(service.url, "owner@acme.example.com")[1]["access_token"]
        results["flood"] = flood(service.url, access)
        # The floor in each worker layout, its best per figure: a floor is only
        # a floor at its best (sync workers, one request per process at a time,
        # are the fastest here for one query per request).
        floors = floor_servers(floor_env, cores)
        for path, key in PAGES:
            results[key] = compare_pages(service, floors, path, access)
        results["worker_rss_mb"] = service.worker_rss_mb()
    finally:
        service.stop()
        for floor in floors.values():
            floor.stop()
        if bouncer is not None:
            bouncer.stop()

    report(results)
    return 0


def report(r: dict) -> None:
    c = r["concurrent_logins"]
    login_overhead = r["login_p50_ms"] - r["bcrypt_verify_ms"]
    rows = [
        ("bcrypt verify (cost 12), alone", f"{r['bcrypt_verify_ms']:.1f} ms", ""),
        ("login p50, sequential", f"{r['login_p50_ms']:.1f} ms", f"bcrypt + {login_overhead:.1f} ms"),
        ("100 concurrent logins, wall", f"{c['wall_s']:.2f} s", f"ideal {c['ideal_s']:.2f} s: {c['efficiency']:.0%}"),
        ("100 concurrent logins, p50 / p95", f"{c['p50_ms']:.0f} / {c['p95_ms']:.0f} ms", f"{c['successes']}/100 ok"),
        ("refresh p50", f"{r['refresh_p50_ms']:.1f} ms", ""),
    ]
    for path, key in PAGES:
        s, f, ratios, best = r[key]["service"], r[key]["floor"], r[key], r[key]["floor_layouts"]
        target = ">= 0.6" if key == "tenant_me" else ">= 0.5"
        rows.append(
            (
                f"GET {path.removeprefix('/api/v1')} throughput (32 conn)",
                f"{s['rps']:.0f} req/s",
                f"floor {f['rps']:.0f} ({best['throughput']}): ratio {ratios['throughput_ratio']:.2f} "
                f"(target {target}; median of {WRK_ROUNDS} turns)",
            )
        )
        rows.append(
            (
                f"GET {path.removeprefix('/api/v1')} p50 / p99",
                f"{s['p50_ms']:.2f} / {s['p99_ms']:.2f} ms",
                f"floor p99 {f['p99_ms']:.2f} ({best['p99']}): p99 ratio {ratios['p99_ratio']:.2f}"
                + (" (target <= 2)" if key == "tenant_me" else ""),
            )
        )
        errors = {
            name: run["errors"] for name, run in [("service", s), *r[key]["floor_medians"].items()] if run["errors"]
        }
        if errors:
            rows.append((f"GET {path.removeprefix('/api/v1')} non-2xx", str(errors), ""))
    fl = r["flood"]
    rows.append(
        (
            "GET /tenants/me p99, 1 client: idle / login flood",
            f"{fl['idle_p99_ms']:.1f} / {fl['during_p99_ms']:.1f} ms",
            f"ratio {fl['p99_ratio']:.2f} (target <= 3; median of {FLOOD_ROUNDS} turns: "
            + ", ".join(f"{r['p99_ratio']:.2f}" for r in fl["rounds"])
            + f"); {FLOOD_CONNECTIONS} flooding connections, {fl['flood_rps']:.0f} logins/s",
        )
    )
    rss = r["worker_rss_mb"]
    rows.append(("resident memory per worker, after", " / ".join(f"{mb:.0f}" for mb in rss) + " MB", "target < 150"))
    width = max(len(row[0]) for row in rows)
    print(f"\nWafaa benchmark ({r['setup']}), {r['cores']} cores, gunicorn.conf.py defaults, APP_ENV=production\n")
    for name, value, note in rows:
        print(f"  {name:<{width}}  {value:>18}  {note}")
    print("\n" + json.dumps(r, separators=(",", ":")))


if __name__ == "__main__":
    sys.exit(main())
