#!/usr/bin/env python3
"""Tests of licensing_client.py against the real programs: a core on a temporary SQLite file and a
gateway, both on free ports, plus a tampering proxy in front of the gateway that plays the fake
server. Each check of the client is shown to catch the attack it exists for.

Usage: test_licensing_client.py TARGET_DIR [unittest args]   (TARGET_DIR holds core-service and
http-gateway, e.g. target/debug; needs the `cryptography` package). KEEP_LOGS=1 keeps the
programs' log.
"""

import base64
import datetime
import hashlib
import http.client
import http.server
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.error
import urllib.parse
import urllib.request

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from licensing_client import (  # noqa: E402
    LicensingClient, Refused, Unavailable, VerificationError, key_id)

TARGET = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "target/debug")
DEV, DEV_PW = "vendor", "vendor-password"
BINARY = os.urandom(100_000)
S = {}  # the stack: processes, URLs, apps, proxy


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cli(*args):
    """Runs a core-service command on the test database; its JSON answer."""
    out = subprocess.run([f"{TARGET}/core-service", "--database-url", S["db"], *args],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def post(path, fields, data=None, headers=None):
    """A plain POST to the gateway (no verification): (HTTP status, JSON answer)."""
    request = urllib.request.Request(f"{S['gateway']}/api/{path}", method="POST", headers=headers or {},
                                     data=data or urllib.parse.urlencode(fields).encode())
    try:
        with urllib.request.urlopen(request) as answer:
            return answer.status, json.load(answer)
    except urllib.error.HTTPError as e:
        return e.code, json.load(e)


def admin(action, app, **fields):
    return post(f"admin.php?action={action}", {"developer_username": DEV, "develoer_password": DEV_PW,
                                               "app_secret": app["secret"], **fields})[1]


def upload(app, name, data):
    boundary = secrets.token_hex(16)
    body = b"".join(f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
                    for k, v in (("developer_username", DEV), ("develoer_password", DEV_PW),
                                 ("app_secret", app["secret"])))
    body += (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
             f"Content-Type: application/octet-stream\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return post("admin.php?action=upload_file", None, body,
                {"Content-Type": f"multipart/form-data; boundary={boundary}"})[1]


def new_app(name):
    """An app with licences; `keys` is the list of its unused licence keys."""
    app = cli("app", "add", "--developer", DEV, "--name", name)
    expiry = (datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=365))
    app["licences"] = admin("create_licences", app, amount=10, access=3,
                            expire_date=expiry.strftime("%Y-%m-%d %H:%M:%S"))
    return app


def register(app, username, password, hwid, licensed=True):
    fields = {"username": username, "password": password, "hwid": hwid, "email": f"{username}@example.com",
              "app_secret": app["secret"]}
    if licensed:
        fields["licence"] = app["licences"].pop()
    status, answer = post("action.php?action=register", fields)
    assert status == 200, answer


def b64url(raw):
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def unb64url(part):
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def forge(header, claims, key):
    """A token with this header and claims, signed by `key` (the fake server's own key)."""
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
    return f"{signing_input}.{b64url(key.sign(signing_input.encode()))}"


def public_b64(key):
    return base64.b64encode(key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)).decode()


class Proxy:
    """The fake server: forwards client actions to the gateway; a test may rewrite the request
    (`on_request(action, fields)`) and the answer (`on_answer(status, headers, body)`), or make it
    unreachable (`down`: the connection closes without an answer)."""

    def __init__(self, upstream_port):
        self.upstream_port, self.on_request, self.on_answer, self.down = upstream_port, None, None, False
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                action = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(self.path).query)).get("action", "")
                length = int(self.headers.get("Content-Length", 0))
                fields = dict(urllib.parse.parse_qsl(self.rfile.read(length).decode()))
                if proxy.down:
                    return
                if proxy.on_request:
                    action, fields = proxy.on_request(action, fields)
                status, headers, body = proxy.forward(action, fields)
                if proxy.on_answer:
                    status, headers, body = proxy.on_answer(status, headers, body)
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def forward(self, action, fields):
        connection = http.client.HTTPConnection("127.0.0.1", self.upstream_port, timeout=30)
        connection.request("POST", f"/api/action.php?action={urllib.parse.quote(action)}",
                           urllib.parse.urlencode(fields), {"Content-Type": "application/x-www-form-urlencoded"})
        answer = connection.getresponse()
        headers = {k.lower(): v for k, v in answer.getheaders()
                   if k.lower() in ("content-type", "x-response-token", "content-disposition", "retry-after")}
        body = answer.read()
        connection.close()
        return answer.status, headers, body


def with_token(headers, body, token):
    """The answer with its token replaced in the header and (for JSON) the body."""
    headers = {**headers, "x-response-token": token}
    if headers.get("content-type", "").startswith("application/json"):
        body = json.dumps({**json.loads(body), "token": token}).encode()
    return headers, body


def setUpModule():
    try:
        start_stack()
    except BaseException:
        tearDownModule()  # unittest skips it when setUpModule fails: stop what was started
        raise


def start_stack():
    S["tmp"] = tempfile.mkdtemp(prefix="pyclient-")
    S["db"] = f"sqlite://{S['tmp']}/licensing.db?mode=rwc"
    core_port, gateway_port = free_port(), free_port()
    S["log"] = open(os.path.join(S["tmp"], "programs.log"), "wb")
    S["core"] = subprocess.Popen([f"{TARGET}/core-service", "--database-url", S["db"], "serve",
                                  "--listen", f"127.0.0.1:{core_port}", "--throttle-username-limit", "1000",
                                  "--throttle-address-limit", "100000"], stdout=S["log"], stderr=S["log"])
    for _ in range(150):
        if subprocess.run([f"{TARGET}/core-service", "health", "--url", f"http://127.0.0.1:{core_port}"],
                          capture_output=True).returncode == 0:
            break
        time.sleep(0.2)
    else:
        raise RuntimeError("the core never became healthy")
    S["gw"] = subprocess.Popen([f"{TARGET}/http-gateway", "--listen", f"127.0.0.1:{gateway_port}",
                                "--core-url", f"http://127.0.0.1:{core_port}"], stdout=S["log"], stderr=S["log"])
    S["gateway"] = f"http://127.0.0.1:{gateway_port}"
    for _ in range(150):
        try:
            with urllib.request.urlopen(f"{S['gateway']}/readyz", timeout=2):
                break
        except OSError:
            time.sleep(0.2)
    else:
        raise RuntimeError("the gateway never became ready")
    cli("developer", "add", "--username", DEV, "--password", DEV_PW)
    S["a"], S["b"] = new_app("App A"), new_app("App B")
    assert upload(S["a"], "app.bin", BINARY) == {"status": "success"}
    register(S["a"], "bob", "bob-password", "HWID-1")
    register(S["b"], "bob", "bob-password", "HWID-1")  # the same account in another app
    register(S["a"], "mallory", "mallory-password", "HWID-M")
    register(S["a"], "carol", "carol-password", "HWID-C", licensed=False)
    S["proxy"] = Proxy(gateway_port)


def tearDownModule():
    if "proxy" in S:
        S["proxy"].server.shutdown()
        S["proxy"].server.server_close()
    for name in ("gw", "core"):
        if name in S:
            S[name].terminate()
            S[name].wait(timeout=40)
    if "log" in S:
        S["log"].close()
    if os.environ.get("KEEP_LOGS"):
        print(f"logs: {S['tmp']}/programs.log", file=sys.stderr)
    else:
        shutil.rmtree(S.get("tmp", ""), ignore_errors=True)


USERS = {"bob": ("bob-password", "HWID-1"), "mallory": ("mallory-password", "HWID-M"),
         "carol": ("carol-password", "HWID-C")}


class ClientTest(unittest.TestCase):
    def setUp(self):
        self.proxy = S["proxy"]
        self.proxy.on_request = self.proxy.on_answer = None
        self.proxy.down = False
        self.dir = tempfile.mkdtemp(dir=S["tmp"])

    def client(self, user="bob", app=None, pins=None, direct=False, hwid=None, **kw):
        app = app or S["a"]
        password, bound = USERS.get(user, ("", ""))
        return LicensingClient(S["gateway"] if direct else self.proxy.url, app["secret"],
                               pins or [app["public"]], user, password, bound if hwid is None else hwid, **kw)

    def assertForged(self, call, why):
        with self.assertRaises(VerificationError) as caught:
            call()
        self.assertIn(why, caught.exception.message)
        self.assertEqual(caught.exception.code, "invalid_token")

    def test_happy_paths(self):
        app = S["a"]
        dave = LicensingClient(S["gateway"], app["secret"], app["public"], "dave", "dave-password", "HWID-D")
        claims = dave.register("dave@example.com", licence=app["licences"].pop()).claims
        self.assertEqual((claims["act"], claims["st"], claims["sub"], claims["hwid"], claims["lic"], claims["lvl"]),
                         ("register", "success", "dave", "HWID-D", "active", 3))
        login = dave.login()
        self.assertEqual(login.kid, key_id(app["public"]))
        self.assertEqual(login.body["licence_status"], "active")
        self.assertEqual(dave.lease["exp"], min(login.claims["lexp"], login.claims["iat"] + 86400))
        first = dave.connect()
        self.assertFalse(first.offline)
        self.assertEqual(dave.connect().claims["pings"], first.claims["pings"] + 1)
        self.assertEqual(dave.redeem(app["licences"].pop()).claims["lic"], "active")
        path = os.path.join(self.dir, "app.bin")
        answer = dave.download(path)
        with open(path, "rb") as f:
            self.assertEqual(f.read(), BINARY)
        self.assertEqual(answer.claims["sha256"], hashlib.sha256(BINARY).hexdigest())
        self.assertEqual(os.listdir(self.dir), ["app.bin"])

    def test_refusals_are_typed(self):
        with self.assertRaises(Refused) as caught:
            self.client(direct=True, hwid="HWID-2").login()
        self.assertEqual((caught.exception.code, caught.exception.signed), ("hwid_mismatch", True))
        self.assertEqual(caught.exception.claims["hwid"], "HWID-1")
        with self.assertRaises(Refused) as caught:
            self.client("carol", direct=True).download(os.path.join(self.dir, "app.bin"))
        self.assertEqual(caught.exception.code, "no_active_licence")
        self.assertEqual(os.listdir(self.dir), [])
        with self.assertRaises(Refused) as caught:  # the app is not known: the contract leaves it unsigned
            LicensingClient(S["gateway"], "0" * 64, S["a"]["public"], "bob", "bob-password", "HWID-1").login()
        self.assertEqual((caught.exception.code, caught.exception.signed), ("invalid_app_secret", False))

    def test_token_signed_by_another_apps_key(self):
        # The fake server relays the same account's genuine answers from another app.
        self.proxy.on_request = lambda action, fields: (action, {**fields, "app_secret": S["b"]["secret"]})
        self.assertForged(self.client().login, "not pinned")
        self.assertEqual(self.client(app=S["b"]).login().kid, key_id(S["b"]["public"]))  # genuine for B

        def claim_app_a(status, headers, body):  # ... and relabels them with app A's kid
            _, claims, signature = headers["x-response-token"].split(".")
            header = b64url(json.dumps({"alg": "EdDSA", "typ": "JWT", "kid": key_id(S["a"]["public"])}).encode())
            return (status, *with_token(headers, body, f"{header}.{claims}.{signature}"))
        self.proxy.on_answer = claim_app_a
        self.assertForged(self.client().login, "signature")

    def test_fake_server_key_under_a_pinned_kid(self):
        attacker = Ed25519PrivateKey.generate()

        def resign(status, headers, body):
            header, claims, _ = headers["x-response-token"].split(".")
            token = forge(json.loads(unb64url(header)), json.loads(unb64url(claims)), attacker)
            return (status, *with_token(headers, body, token))
        self.proxy.on_answer = resign
        self.assertForged(self.client().login, "signature")

    def test_unknown_kid(self):
        attacker = Ed25519PrivateKey.generate()
        for header in ({"alg": "EdDSA", "typ": "JWT", "kid": key_id(public_b64(attacker))},
                       {"alg": "EdDSA", "typ": "JWT"}):
            def resign(status, headers, body, header=header):
                claims = json.loads(unb64url(headers["x-response-token"].split(".")[1]))
                return (status, *with_token(headers, body, forge(header, claims, attacker)))
            self.proxy.on_answer = resign
            self.assertForged(self.client().login, "not pinned")
        # A token without a kid is refused even when the client pins only the key that signed it.
        self.assertForged(self.client(pins=[public_b64(attacker)]).login, "not pinned")

    def test_replayed_answer_with_another_nonce(self):
        recorded = []

        def replay(status, headers, body):
            recorded.append((status, headers, body))
            return recorded[0]
        self.proxy.on_answer = replay
        client = self.client()
        self.assertEqual(client.login().claims["st"], "success")
        self.assertForged(client.login, "another request")

    def test_answer_to_another_action(self):
        self.proxy.on_request = lambda action, fields: ("login", fields)
        self.assertForged(self.client().connect, "another request")

    def test_success_token_answered_to_a_failed_request(self):
        # The request fails (wrong HWID, wrong password): the fake server gets a genuine success
        # for the right HWID or for its own account and answers that.
        self.proxy.on_request = lambda action, fields: (action, {**fields, "hwid": "HWID-1"})
        self.assertForged(self.client(hwid="HWID-CRACKED").login, "HWID")
        self.proxy.on_request = lambda action, fields: (
            action, {**fields, "username": "mallory", "password": "mallory-password", "hwid": "HWID-M"})
        self.assertForged(self.client(hwid="HWID-M").connect, "user")
        # The genuine failure (signed hwid_mismatch) relabelled as a success: status and body.
        self.proxy.on_request = None
        self.proxy.on_answer = lambda status, headers, body: (
            200, headers, json.dumps({**json.loads(body), "status": "success"}).encode())
        self.assertForged(self.client(hwid="HWID-CRACKED").login, "token says 'hwid_mismatch'")
        # And the other way round: a success token on a failure answer is no failure of the service.
        self.proxy.on_answer = lambda status, headers, body: (
            403, headers, json.dumps({**json.loads(body), "status": "licence_banned"}).encode())
        self.assertForged(self.client().connect, "token says 'success'")
        self.proxy.on_answer = lambda status, headers, body: (403, headers, body)
        self.assertForged(self.client().connect, "HTTP 403")

    def test_body_altered_after_signing(self):
        def upgrade_claims(status, headers, body):  # carol has no licence; the claims say active
            header, claims, signature = headers["x-response-token"].split(".")
            claims = b64url(json.dumps({**json.loads(unb64url(claims)), "lic": "active"}).encode())
            return (status, *with_token(headers, body, f"{header}.{claims}.{signature}"))
        self.proxy.on_answer = upgrade_claims
        self.assertForged(self.client("carol").login, "signature")
        self.proxy.on_answer = lambda status, headers, body: (
            status, headers, json.dumps({**json.loads(body), "licence_status": "active"}).encode())
        self.assertForged(self.client("carol").login, "disagrees")
        self.proxy.on_answer = lambda status, headers, body: (  # the body's token is another one
            status, headers, json.dumps({**json.loads(body), "token": "x.y.z"}).encode())
        self.assertForged(self.client("carol").login, "differ")
        self.proxy.on_answer = lambda status, headers, body: (  # no token at all
            status, {"content-type": headers["content-type"]}, json.dumps({"status": "success"}).encode())
        self.assertForged(self.client("carol").login, "unsigned answer 'success'")
        self.proxy.on_answer = None
        self.assertEqual(self.client("carol").login().claims["lic"], "none")

    def test_download_bytes_altered(self):
        def flip(status, headers, body):
            return status, headers, body[:500] + bytes([body[500] ^ 1]) + body[501:]
        self.proxy.on_answer = flip
        self.assertForged(lambda: self.client().download(os.path.join(self.dir, "app.bin")), "sha256")
        self.assertEqual(os.listdir(self.dir), [], "the partial file is removed")

    def test_times_checked_with_skew(self):
        for offset in (-3600, 3600):  # a token from the future; a token expired long ago (60 s)
            client = self.client("carol", clock=lambda: time.time() + offset)
            self.assertForged(client.login, "not valid now")
        self.client("carol", clock=lambda: time.time() + 100).login()  # within the 120 s skew

    def test_key_rotation_through_the_cli(self):
        app = new_app("Rotating")
        old = app["public"]
        self.assertEqual([(k["kid"], k["state"]) for k in app["keys"]], [(key_id(old), "signing")])
        register(app, "bob", "bob-password", "HWID-1")
        app_id = str(app["id"])  # `--kid=KID`: a kid may start with `-`
        keys = cli("app", "add-key", "--app", app_id)["keys"]
        self.assertTrue(all(k["kid"] == key_id(k["public"]) for k in keys), keys)
        (new,) = [k["public"] for k in keys if k["state"] == "next"]
        both, only_old = self.client(app=app, pins=[old, new]), self.client(app=app, pins=[old])
        self.assertEqual(both.login().kid, key_id(old))
        self.assertEqual(only_old.login().kid, key_id(old))
        keys = cli("app", "promote-key", "--app", app_id, f"--kid={key_id(new)}")["keys"]
        self.assertEqual({k["kid"]: k["state"] for k in keys}, {key_id(new): "signing", key_id(old): "previous"})
        self.assertEqual(both.connect().kid, key_id(new))
        self.assertForged(only_old.login, "not pinned")
        keys = cli("app", "retire-key", "--app", app_id, f"--kid={key_id(old)}")["keys"]
        self.assertNotIn(key_id(old), [k["kid"] for k in keys])
        self.assertEqual(cli("app", "keys", "--app", app_id)["keys"], keys)
        self.assertEqual(both.login().kid, key_id(new))
        self.assertForged(only_old.login, "not pinned")

    def test_offline_lease(self):
        offset = [0]
        client = self.client(clock=lambda: time.time() + offset[0])
        self.assertFalse(client.connect().offline)
        lease = client.lease
        self.assertEqual(lease["lic"], "active")
        self.proxy.down = True  # the network is gone
        offset[0] = lease["exp"] - time.time() - 5
        answer = client.connect()
        self.assertTrue(answer.offline)
        self.assertEqual(answer.claims, lease)
        offset[0] = lease["exp"] - time.time()  # the lease ran out
        with self.assertRaises(Unavailable):
            client.connect()
        with self.assertRaises(Unavailable):
            client.connect(offline_ok=False)
        # An unsigned `unavailable` (the gateway lost its core) is no refusal: the lease holds.
        offset[0], self.proxy.down = 0, False
        self.proxy.on_answer = lambda status, headers, body: (
            503, {"content-type": "application/json"}, b'{"status":"unavailable","message":"down"}')
        self.assertTrue(client.connect().offline)
        # A verified refusal ends the lease at once; so does a success for a user not active.
        self.proxy.on_answer = None
        client.password = "wrong-password"
        with self.assertRaises(Refused) as caught:
            client.connect()
        self.assertEqual(caught.exception.code, "invalid_credentials")
        self.assertIsNone(client.lease)
        self.proxy.down = True
        with self.assertRaises(Unavailable):
            client.connect()
        self.proxy.down = False
        carol = self.client("carol")
        carol.connect()
        self.assertIsNone(carol.lease)


if __name__ == "__main__":
    unittest.main(argv=[sys.argv[0], *sys.argv[2:]])
