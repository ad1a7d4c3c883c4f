#!/usr/bin/env python3
"""Runs the README's walkthrough exactly as written, so the README cannot drift from the programs.

Usage: walkthrough.py [debug|release]   (from anywhere; default debug)

It starts `./scripts/local-stack` (the README's first command) on a fresh database, then runs
every shell line between `<!-- walkthrough: begin -->` and `<!-- walkthrough: end -->` in order,
in one bash session from the repository root, with `set -euo pipefail`. Two substitutions, and
only these, are made:
  - `target/release/` becomes `target/PROFILE/` (CI builds debug binaries only);
  - `data/licensing.db` becomes a fresh temporary file, so an existing local database is untouched.
A command fails the run when it exits non-zero, or when a `curl` in it answers a status outside
2xx. A line that ends with `# fails with NNN` must answer exactly HTTP NNN; one that ends with
`# fails` (not curl) must exit non-zero. Files the walkthrough writes in the repository root are
removed afterwards.
"""
import os
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
GATEWAY = "127.0.0.1:8080"
CORE = "127.0.0.1:50051"

# curl as the walkthrough's lines call it, reporting each answer's status on stderr and failing
# the step when the status is not the one the line expects.
PRELUDE = r"""
set -euo pipefail
curl() {
    local err rc=0 status
    err=$(mktemp)
    command curl -sS -w '%{stderr}@@status=%{http_code}@@\n' "$@" 2>"$err" || rc=$?
    status=$(grep -o '@@status=[0-9]*@@' "$err" | tail -n1 | tr -dc 0-9)
    grep -v '@@status=' "$err" >&2 || true
    rm -f "$err"
    if [ "$rc" != 0 ]; then echo "walkthrough: curl exited $rc" >&2; return "$rc"; fi
    case "$WALK_EXPECT" in
        2xx) [[ "$status" == 2?? ]] || { echo "walkthrough: HTTP $status, expected 2xx" >&2; return 1; } ;;
        *) [ "$status" = "$WALK_EXPECT" ] || { echo "walkthrough: HTTP $status, expected $WALK_EXPECT" >&2; return 1; } ;;
    esac
}
"""


def readme_steps(text):
    """The walkthrough's commands in order: continuation lines joined, comment lines dropped."""
    begin = text.index("<!-- walkthrough: begin -->")
    end = text.index("<!-- walkthrough: end -->")
    blocks = re.findall(r"```sh\n(.*?)```", text[begin:end], re.S)
    steps = []
    for block in blocks:
        pending = ""
        for line in block.splitlines():
            if not pending and (not line.strip() or line.lstrip().startswith("#")):
                continue
            if line.endswith("\\"):
                pending += line[:-1] + " "
                continue
            steps.append(pending + line.strip())
            pending = ""
        if pending:
            sys.exit(f"walkthrough: a block ends in a continuation line: {pending!r}")
    return steps


def script_for(steps):
    out = [PRELUDE]
    for step in steps:
        # The newline ends the previous answer (curl prints none) before the next step is shown.
        shown = shlex.quote("+ " + step)
        out.append("echo")
        m = re.search(r"#\s*fails(?: with (\d{3}))?\s*$", step)
        if m and m.group(1):
            out.append(f"echo {shown} >&2; WALK_EXPECT={m.group(1)}\n{step}")
        elif m:
            out.append(f"echo {shown} >&2; WALK_EXPECT=2xx\n"
                       f"if {step}\nthen echo 'walkthrough: expected a failure' >&2; exit 1; fi")
        else:
            out.append(f"echo {shown} >&2; WALK_EXPECT=2xx\n{step}")
    out.append("echo")
    out.append("echo 'walkthrough: every step ran as the README says' >&2")
    return "\n".join(out) + "\n"


def port_free(addr):
    import socket
    host, port = addr.rsplit(":", 1)
    with socket.socket() as s:
        return s.connect_ex((host, int(port))) != 0


def wait_ready(stack, deadline):
    while time.time() < deadline:
        if stack.poll() is not None:
            sys.exit(f"walkthrough: local-stack exited with {stack.returncode} before it was ready")
        try:
            with urllib.request.urlopen(f"http://{GATEWAY}/readyz", timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    sys.exit("walkthrough: the stack did not become ready")


def main():
    profile = sys.argv[1] if len(sys.argv) > 1 else "debug"
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        readme = f.read()
    # The first command of the README starts the stack.
    first = re.search(r"```sh\n(.*?)\n", readme).group(1).split("#")[0].strip()
    if first != "./scripts/local-stack":
        sys.exit(f"walkthrough: the README's first command is {first!r}, not ./scripts/local-stack")
    for addr in (CORE, GATEWAY):
        if not port_free(addr):
            sys.exit(f"walkthrough: {addr} is in use; stop what listens there first")

    data = tempfile.mkdtemp(prefix="walkthrough-")
    steps = [s.replace("target/release/", f"target/{profile}/")
              .replace("data/licensing.db", f"{data}/licensing.db") for s in readme_steps(readme)]
    before = set(os.listdir(ROOT))
    env = dict(os.environ, DATA_DIR=data, LOCAL_STACK_PROFILE=profile)
    env.pop("DATABASE_URL", None)
    stack = subprocess.Popen([first], cwd=ROOT, env=env, start_new_session=True)
    try:
        wait_ready(stack, time.time() + 900)
        script = script_for(steps)
        run_env = dict(os.environ)
        run_env.pop("DATABASE_URL", None)
        result = subprocess.run(["bash", "-c", script], cwd=ROOT, env=run_env)
        if result.returncode != 0:
            sys.exit(f"walkthrough: failed (exit {result.returncode}); the last step shown above is the one")
    finally:
        os.killpg(stack.pid, signal.SIGTERM)
        try:
            stack.wait(timeout=40)
        except subprocess.TimeoutExpired:
            os.killpg(stack.pid, signal.SIGKILL)
        for name in set(os.listdir(ROOT)) - before:
            path = os.path.join(ROOT, name)
            if os.path.isfile(path):
                os.remove(path)
        subprocess.run(["rm", "-rf", data])


if __name__ == "__main__":
    main()
