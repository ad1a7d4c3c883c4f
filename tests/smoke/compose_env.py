"""Runs core-service and http-gateway with exactly the environment docker-compose.yml gives them,
against this machine's PostgreSQL, and logs a user in through them.

The compose file is parsed by `docker-compose config` (no container engine needed), never copied
here. Only what a container network provides is translated: the service host names `postgres` and
`core` become 127.0.0.1, and the database name becomes a fresh one, dropped afterwards.

Usage: compose_env.py DOCKER_COMPOSE_BIN TARGET_DIR
"""

import json
import os
import subprocess
import sys
import time
import urllib.parse
import urllib.request

compose_bin, target = sys.argv[1], sys.argv[2]
config = json.loads(
    subprocess.run(
        [compose_bin, "-f", "docker-compose.yml", "config", "--format", "json"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
)
core_env = dict(config["services"]["core"]["environment"])
gateway_env = dict(config["services"]["gateway"]["environment"])

database = f"licensing_compose_{os.getpid()}"
url = urllib.parse.urlsplit(core_env["DATABASE_URL"])
assert url.hostname == "postgres", core_env["DATABASE_URL"]
user, password = url.username, url.password


def psql(sql):
    subprocess.run(["psql", "-q", "-h", "127.0.0.1", "-U", "postgres", "-c", sql], check=True)


exists = subprocess.run(
    ["psql", "-tA", "-h", "127.0.0.1", "-U", "postgres", "-c", f"SELECT 1 FROM pg_roles WHERE rolname = '{user}'"],
    check=True,
    capture_output=True,
    text=True,
).stdout.strip()
if not exists:
    psql(f"CREATE ROLE {user} LOGIN PASSWORD '{password}'")
psql(f'CREATE DATABASE "{database}" OWNER {user}')
core_env["DATABASE_URL"] = urllib.parse.urlunsplit(
    (url.scheme, f"{user}:{password}@127.0.0.1:{url.port}", f"/{database}", url.query, "")
)
gateway_env["CORE_URL"] = gateway_env["CORE_URL"].replace("//core:", "//127.0.0.1:")
core_port = core_env["CORE_LISTEN"].rsplit(":", 1)[1]
gateway_port = gateway_env["GATEWAY_LISTEN"].rsplit(":", 1)[1]

base = {"PATH": os.environ["PATH"]}
core_bin, gateway_bin = f"{target}/core-service", f"{target}/http-gateway"
processes = []
try:
    processes.append(subprocess.Popen([core_bin, "serve"], env={**base, **core_env}))
    for _ in range(100):
        health = subprocess.run([core_bin, "health", "--url", f"http://127.0.0.1:{core_port}"], capture_output=True)
        if health.returncode == 0:
            break
        time.sleep(0.2)
    else:
        sys.exit("the core never became healthy")
    processes.append(subprocess.Popen([gateway_bin], env={**base, **gateway_env}))

    cli_env = {**base, "DATABASE_URL": core_env["DATABASE_URL"]}
    subprocess.run([core_bin, "developer", "add", "--username", "compose", "--password", "compose-pw"], env=cli_env, check=True)
    app = json.loads(
        subprocess.run(
            [core_bin, "app", "add", "--developer", "compose", "--name", "Compose"],
            env=cli_env,
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    )

    api = f"http://127.0.0.1:{gateway_port}"
    for _ in range(100):
        try:
            with urllib.request.urlopen(f"{api}/readyz") as ready:
                if ready.status == 200:
                    break
        except OSError:
            pass
        time.sleep(0.2)
    else:
        sys.exit("the gateway never became ready")

    def post(action, **fields):
        body = urllib.parse.urlencode({**fields, "app_secret": app["secret"]}).encode()
        with urllib.request.urlopen(f"{api}/api/action.php?action={action}", data=body) as answer:
            return answer.status, json.load(answer)

    status, body = post("register", username="composer", password="compose-user-pw", email="c@example.com", hwid="HW")
    assert status == 200 and body["status"] == "success", body
    status, body = post("login", username="composer", password="compose-user-pw", hwid="HW")
    assert status == 200 and body["status"] == "success" and body["name"] == "composer", body
    print("compose environment: core and gateway started as configured; register and login succeeded")
finally:
    for process in processes:
        process.terminate()
    for process in processes:
        process.wait(timeout=40)
    psql(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
