"""Issue 10, item 8: the document and the service agree.

`st run --checks all --mode all` with every phase (examples, coverage, fuzzing,
stateful) against the document a real gunicorn serves, as an owner and as a
viewer (of two tenants, at once): no failure of any check. Bounded
(ST_MAX_EXAMPLES per operation, a fixed seed) so that CI stays short; raise it
locally for a deeper run, and narrow it with ST_ARGS, e.g.
ST_ARGS="--include-operation-id=update_tenant --phases=coverage".

tests/schemathesis_hooks.py gives every call tokens of its own;
tests/schemathesis.toml says why 412 is an expected answer to valid data.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

from tests.servers import GunicornServer

ROOT = Path(__file__).resolve().parent.parent
ST = Path(sys.executable).with_name("st")
MAX_EXAMPLES = os.environ.get("ST_MAX_EXAMPLES", "10")


def st_run(server: GunicornServer, admin, workdir: Path) -> subprocess.Popen:
    command = [
        str(ST),
        f"--config-file={ROOT / 'tests' / 'schemathesis.toml'}",
        "run",
        f"{server.url}/openapi.json",
        "--checks=all",
        "--mode=all",
        "--phases=examples,coverage,fuzzing,stateful",
        f"--max-examples={MAX_EXAMPLES}",
        "--seed=20261205",
        "--workers=1",
        "--suppress-health-check=all",
        f"--report-dir={workdir}",
        *shlex.split(os.environ.get("ST_ARGS", "")),
    ]
    env = {
        **os.environ,
        "SCHEMATHESIS_HOOKS": str(ROOT / "tests" / "schemathesis_hooks.py"),
        "PYTHONPATH": str(ROOT),  # the hooks read the password rule from wafaa.passwords
        "WAFAA_ST_URL": server.url,
        "WAFAA_ST_EMAIL": admin.email,
        "WAFAA_ST_PASSWORD": admin.password,
        "WAFAA_ST_ADMIN_ID": str(admin.id),
        "NO_COLOR": "1",
    }
    workdir.mkdir()
    with (workdir / "output.txt").open("w") as output:  # the child keeps its own descriptor
        return subprocess.Popen(command, env=env, cwd=workdir, stdout=output, stderr=subprocess.STDOUT)


def test_schemathesis_finds_no_failure_as_an_owner_or_a_viewer(factory, tmp_path):
    # One tenant each: what the owner's run changes (names, admins, sessions) is
    # not what the viewer's run reads. The hooks keep each run from changing the
    # account it logs in with.
    runners = {role: factory.world().by_role(role) for role in ("owner", "viewer")}
    # One trusted proxy: the hooks' logins name their own source (X-Forwarded-For).
    with GunicornServer(workers=2, threads=4, env={"TRUSTED_PROXY_COUNT": "1"}) as server:
        runs = {role: st_run(server, admin, tmp_path / role) for role, admin in runners.items()}
        codes = {role: run.wait(timeout=600) for role, run in runs.items()}
    for role in codes:
        print(f"--- st run as {role} ---\n" + (tmp_path / role / "output.txt").read_text())
    assert codes == {"owner": 0, "viewer": 0}, "st run found failures (its output is above)"
