"""Issue 10, item 8: the document and the service agree.

`st run --checks all --mode all` with every phase (examples, coverage, fuzzing,
stateful) against the document a real gunicorn serves, as an owner and as a
viewer: no failure of any check. Bounded (ST_MAX_EXAMPLES per operation, a fixed
seed) so that CI stays short; raise it locally for a deeper run.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.servers import GunicornServer

ROOT = Path(__file__).resolve().parent.parent
ST = Path(sys.executable).with_name("st")
HOOKS = ROOT / "tests" / "schemathesis_hooks.py"
MAX_EXAMPLES = os.environ.get("ST_MAX_EXAMPLES", "10")


def st_run(server: GunicornServer, email: str, password: str, tmp_path: Path) -> subprocess.CompletedProcess:
    command = [
        str(ST),
        "run",
        f"{server.url}/openapi.json",
        "--checks=all",
        "--mode=all",
        "--phases=examples,coverage,fuzzing,stateful",
        f"--max-examples={MAX_EXAMPLES}",
        "--seed=20261205",
        "--workers=1",
        "--suppress-health-check=all",
        f"--report-dir={tmp_path}",
    ]
    env = {
        **os.environ,
        "SCHEMATHESIS_HOOKS": str(HOOKS),
        "WAFAA_ST_URL": server.url,
        "WAFAA_ST_EMAIL": email,
        "WAFAA_ST_PASSWORD": password,
        "NO_COLOR": "1",
    }
    return subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("role", ["owner", "viewer"])
def test_schemathesis_finds_no_failure(factory, role, tmp_path):
    world = factory.world()
    admin = world.by_role(role)
    with GunicornServer(workers=1, threads=4) as server:
        result = st_run(server, admin.email, admin.password, tmp_path)
    print(result.stdout, result.stderr)  # shown by pytest when the test fails
    assert result.returncode == 0, f"st run found failures as {role} (its output is above)"
