"""A client of the licensing service's HTTP API (docs/http-api.md) that trusts nothing unverified.

Every answer must carry a response token (a JWS, EdDSA) signed by one of the app's pinned public
keys, chosen by the token's `kid`, and made for this very request: the nonce, action, user, HWID,
status and times must agree. Downloads must match the token's SHA-256. Needs `cryptography`.

    client = LicensingClient("https://licensing.example.com", APP_SECRET, [PUBLIC_KEY],
                             "bob", "hunter22", hwid="HWID-1")
    claims = client.login().claims          # decide from claims["lic"], claims["lvl"]
"""

import base64
import dataclasses
import hashlib
import hmac
import http.client
import json
import os
import re
import secrets
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

# The HTTP status of every error code (docs/http-api.md, section 3).
HTTP_STATUS = {
    "success": 200, "missing_field": 400, "invalid_field": 400, "unknown_action": 400,
    "invalid_licence": 400, "invalid_app_secret": 401, "invalid_credentials": 401,
    "invalid_developer": 401, "forbidden": 403, "hwid_mismatch": 403, "licence_banned": 403,
    "no_active_licence": 403, "not_found": 404, "no_file": 404, "method_not_allowed": 405,
    "username_taken": 409, "licence_used": 409, "licence_expired": 410, "payload_too_large": 413,
    "rate_limited": 429, "internal": 500, "app_offline": 503, "unavailable": 503,
}
# Codes the service may answer without a token (it does not know the app yet, or failed first).
UNSIGNED = {"missing_field", "invalid_field", "unknown_action", "invalid_app_secret", "not_found",
            "method_not_allowed", "payload_too_large", "rate_limited", "unavailable", "internal"}
TRANSIENT = {"unavailable", "internal", "rate_limited"}  # try again later; a lease still holds
# Unsigned answer fields that the claims also carry: they must agree.
MIRRORED = {"name": "sub", "hwid": "hwid", "licence_status": "lic", "total_pings": "pings"}
MAX_JSON = 1 << 20


class LicensingError(Exception):
    """Base class: `code` is the contract's error code (or `invalid_token`, see below), `claims`
    the verified claims of a signed answer, `retry_after` the seconds `rate_limited` asks for."""

    def __init__(self, code, message, claims=None, retry_after=None):
        super().__init__(f"{code}: {message}")
        self.code, self.message, self.claims, self.retry_after = code, message, claims, retry_after


class Refused(LicensingError):
    """The service refused. `signed` is True when a verified token proves it (then `claims`)."""

    @property
    def signed(self):
        return self.claims is not None


class Unavailable(LicensingError):
    """No usable answer: network down, or a transient code (`unavailable`, `internal`,
    `rate_limited`). Try again later; `connect()` falls back to the lease on it."""


class VerificationError(LicensingError):
    """The answer is not provably the service's answer to this request (code `invalid_token`):
    treat as an attack, never as success."""

    def __init__(self, message):
        super().__init__("invalid_token", message)


@dataclasses.dataclass(frozen=True)
class Answer:
    """A verified answer: `claims` are signed; `body` holds the JSON fields (unsigned, display
    only); `kid` names the key that signed; `offline` is True for a lease served from memory."""
    claims: dict
    body: dict
    kid: str = ""
    offline: bool = False


def _b64url_encode(raw):
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _b64url_decode(part):
    """Strict base64url without padding: only the alphabet, canonical encoding."""
    if not re.fullmatch(r"[A-Za-z0-9_-]+", part) or len(part) % 4 == 1:
        raise VerificationError("malformed base64url in the token")
    raw = base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
    if _b64url_encode(raw) != part:
        raise VerificationError("non-canonical base64url in the token")
    return raw


def _strict_json(raw):
    """A JSON object from UTF-8 bytes, refusing duplicate keys and NaN/Infinity."""
    def no_duplicates(pairs):
        if len({k for k, _ in pairs}) != len(pairs):
            raise ValueError("duplicate key")
        return dict(pairs)
    def no_constants(name):
        raise ValueError(f"{name} is not JSON")
    try:
        value = json.loads(raw.decode("utf-8"), object_pairs_hook=no_duplicates,
                           parse_constant=no_constants)
    except ValueError as e:  # also UnicodeDecodeError and JSONDecodeError
        raise VerificationError(f"malformed JSON: {e}") from None
    if not isinstance(value, dict):
        raise VerificationError("JSON is not an object")
    return value


def key_id(public_key):
    """The `kid` of a public key (standard base64 of 32 raw bytes): its RFC 7638 thumbprint."""
    raw = base64.b64decode(public_key, validate=True)
    if len(raw) != 32:
        raise ValueError("an Ed25519 public key is 32 bytes")
    jwk = '{"crv":"Ed25519","kty":"OKP","x":"%s"}' % _b64url_encode(raw)
    return _b64url_encode(hashlib.sha256(jwk.encode("ascii")).digest())


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None  # a redirect is answered as it is, and then fails verification


class LicensingClient:
    """One end user of one app. `base_url` is the gateway (`https://host`, without `/api`);
    `public_keys` the app's pinned keys (`public` of `app add` / `get_app_data`, or `public` of
    each key in `app keys`: pin the signing key and the next one during a rotation). `clock`
    and `skew` (seconds allowed between client and service clocks) govern time checks."""

    def __init__(self, base_url, app_secret, public_keys, username, password, hwid="", *,
                 skew=120, timeout=30, clock=time.time):
        if isinstance(public_keys, str):
            public_keys = [public_keys]
        self.keys = {key_id(k): Ed25519PublicKey.from_public_bytes(base64.b64decode(k))
                     for k in public_keys}
        if not self.keys:
            raise ValueError("pin at least one public key")
        self.url = base_url.rstrip("/") + "/api/action.php"
        self.app_secret, self.username, self.password, self.hwid = app_secret, username, password, hwid
        self.skew, self.timeout, self.clock = skew, timeout, clock
        self.lease = None  # claims of the last verified lease (successful login/connect, active)
        self._opener = urllib.request.build_opener(_NoRedirect)

    # --- the actions -------------------------------------------------------------------------

    def register(self, email, licence=None):
        """Creates the user (and binds the HWID), redeeming `licence` if given."""
        return self._call("register", email=email, licence=licence)

    def login(self):
        """Checks the credentials; a successful answer for an active user renews the lease."""
        return self._call("login")

    def connect(self, offline_ok=True):
        """The heartbeat. When the service cannot be reached and the lease has not run out,
        answers the lease's claims with `offline=True` (if `offline_ok`)."""
        try:
            return self._call("connect")
        except Unavailable:
            if offline_ok and self.lease_valid():
                return Answer(dict(self.lease), {}, offline=True)
            raise

    def redeem(self, licence):
        """Redeems a licence key for this user."""
        return self._call("redeem", licence=licence)

    def download(self, path):
        """Streams the app's binary into `path` (replaced only once complete and verified)."""
        nonce, resp = self._post("download", {})
        with resp:
            if resp.status != 200:
                self._judge("download", nonce, resp)  # raises for every failure answer
                raise VerificationError("download answered success without a file")
            answer = self._verify(resp.headers.get("X-Response-Token"), "download", nonce,
                                  resp.status, "success")
            digest = answer.claims.get("sha256")
            if not isinstance(digest, str) or not re.fullmatch(r"[0-9a-f]{64}", digest):
                raise VerificationError("the token has no sha256 claim")
            fd, part = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)), prefix=".part-")
            try:
                sha = hashlib.sha256()
                with os.fdopen(fd, "wb") as out:
                    try:
                        while chunk := resp.read(1 << 16):
                            sha.update(chunk)
                            out.write(chunk)
                    except (OSError, http.client.HTTPException) as e:
                        raise Unavailable("unavailable", f"download cut off: {e}") from e
                if not hmac.compare_digest(sha.hexdigest(), digest):
                    raise VerificationError("the file does not match the token's sha256")
                os.replace(part, path)
            except BaseException:
                os.unlink(part)
                raise
        return answer

    def lease_valid(self):
        """True while the last verified lease lets the app run without the service."""
        return self.lease is not None and self.clock() < self.lease["exp"]

    # --- transport and verification ------------------------------------------------------------

    def _call(self, action, **extra):
        nonce, resp = self._post(action, extra)
        with resp:
            answer = self._judge(action, nonce, resp)
        if action in ("login", "connect"):
            self.lease = answer.claims if answer.claims.get("lic") == "active" else None
        return answer

    def _post(self, action, extra):
        nonce = secrets.token_urlsafe(24)
        fields = {"username": self.username, "password": self.password, "hwid": self.hwid,
                  **extra, "app_secret": self.app_secret, "nonce": nonce}
        body = urllib.parse.urlencode({k: v for k, v in fields.items() if v}).encode()
        request = urllib.request.Request(f"{self.url}?action={action}", data=body, method="POST")
        try:
            return nonce, self._opener.open(request, timeout=self.timeout)
        except urllib.error.HTTPError as e:
            return nonce, e
        except (OSError, http.client.HTTPException) as e:
            raise Unavailable("unavailable", f"no answer from the service: {e}") from e

    def _judge(self, action, nonce, resp):
        """Verifies a JSON answer; returns it on success, raises the matching error otherwise."""
        try:
            raw = resp.read(MAX_JSON + 1)
        except (OSError, http.client.HTTPException) as e:
            raise Unavailable("unavailable", f"answer cut off: {e}") from e
        try:
            if len(raw) > MAX_JSON:
                raise VerificationError("oversized answer")
            body = _strict_json(raw)
        except VerificationError:
            if resp.status in (502, 503, 504):  # e.g. a proxy in between
                raise Unavailable("unavailable", f"HTTP {resp.status}") from None
            raise
        status, header_token = body.get("status"), resp.headers.get("X-Response-Token")
        token = header_token or body.get("token")
        if header_token and "token" in body and body["token"] != header_token:
            raise VerificationError("the header and body tokens differ")
        if not isinstance(status, str):
            raise VerificationError("the answer has no status")
        message, retry_after = str(body.get("message", "")), resp.headers.get("Retry-After")
        if token is None:
            if status not in UNSIGNED or resp.status != HTTP_STATUS[status]:
                raise VerificationError(f"unsigned answer {status!r} (HTTP {resp.status})")
            error = Unavailable if status in TRANSIENT else Refused
            raise error(status, message, None, retry_after)
        answer = dataclasses.replace(self._verify(token, action, nonce, resp.status, status), body=body)
        if status != "success":
            if status in TRANSIENT:
                raise Unavailable(status, message, answer.claims, retry_after)
            if action in ("login", "connect"):
                self.lease = None  # the service itself says no
            raise Refused(status, message, answer.claims, retry_after)
        for field, claim in MIRRORED.items():
            if field in body and claim in answer.claims and body[field] != answer.claims[claim]:
                raise VerificationError(f"the answer's {field!r} disagrees with its token")
        return answer

    def _verify(self, token, action, nonce, http_status, status):
        """Checks the token's signature and that it answers this request with `status`."""
        if not isinstance(token, str) or token.count(".") != 2:
            raise VerificationError("no response token")
        header_part, claims_part, signature_part = token.split(".")
        header = _strict_json(_b64url_decode(header_part))
        if header.get("alg") != "EdDSA" or header.get("typ", "JWT") != "JWT" or "crit" in header:
            raise VerificationError(f"unexpected token header {header}")
        kid = header.get("kid")
        key = self.keys.get(kid) if isinstance(kid, str) else None
        if key is None:
            raise VerificationError(f"token signed by a key not pinned (kid {kid!r})")
        try:
            key.verify(_b64url_decode(signature_part), f"{header_part}.{claims_part}".encode("ascii"))
        except InvalidSignature:
            raise VerificationError("bad token signature") from None
        claims = _strict_json(_b64url_decode(claims_part))
        for name, kind in (("act", str), ("st", str), ("nonce", str), ("iat", int), ("exp", int)):
            if not isinstance(claims.get(name), kind) or isinstance(claims[name], bool):
                raise VerificationError(f"claim {name!r} missing or mistyped")
        if claims["act"] != action or claims["nonce"] != nonce:
            raise VerificationError("the token answers another request (act or nonce)")
        if claims["st"] != status or http_status != HTTP_STATUS.get(status, http_status):
            raise VerificationError(f"token says {claims['st']!r}, answer {status!r} (HTTP {http_status})")
        if (status == "success" or "sub" in claims) and claims.get("sub") != self.username:
            raise VerificationError(f"the token is about user {claims.get('sub')!r}")
        if status == "success" and claims.get("hwid") != (self.hwid or None):
            raise VerificationError(f"the token is about HWID {claims.get('hwid')!r}")
        now = self.clock()
        if claims["iat"] > now + self.skew or now >= claims["exp"] + self.skew:
            raise VerificationError("the token is not valid now (iat/exp)")
        return Answer(claims, {}, kid)
