"""SigV4 gate for the MCP test server: an upstream that only answers calls signed with credentials
that moto's STS issued (what mcpgw must do for a server with `[servers.aws]`).

    app = SigV4Gate(app, moto="http://127.0.0.1:5000", region="us-east-1", service="execute-api")

ASGI middleware (mcp_server.py wraps its app in it given `--sigv4-moto URL --sigv4-region R
--sigv4-service S`). For every HTTP request it:

  1. reads `Authorization: AWS4-HMAC-SHA256 Credential=AKID/DATE/REGION/SERVICE/aws4_request,
     SignedHeaders=..., Signature=...` and `X-Amz-Date`;
  2. finds what moto issued for AKID (`moto_setup.issued`: /moto-api/data.json joined with moto's
     request recording; cached, re-read on a miss);
  3. checks `X-Amz-Security-Token` is the session token moto issued with it, the scope's region
     and service are ours and its date is X-Amz-Date's, X-Amz-Date is within 5 minutes of now,
     the credentials have not expired (moto's record: the AssumeRole call's X-Amz-Date +
     DurationSeconds; an unsigned web-identity call has no date, then from when the gate first
     saw the key; no recorded call at all is refused as `expired`), and that an
     `X-Amz-Content-SHA256` header, if sent, is the SHA-256 of the body (UNSIGNED-PAYLOAD is
     refused: the body would not be covered);
  4. recomputes the signature with botocore's `SigV4Auth` (canonical request over the method, the
     raw path and query, exactly the signed headers as received, Host included, and the body;
     string to sign with X-Amz-Date; key from the issued secret) and compares it in constant time.

A failure is answered 403 with `{"error": REASON, "detail": "..."}`, REASON one of `unsigned`
(no SigV4 Authorization header), `unknown key` (moto issued no such key), `missing token` (no
X-Amz-Security-Token), `bad token` (not the token issued with the key), `expired` (credentials past
expiry, or X-Amz-Date more than 5 minutes off), `bad signature` (anything else: malformed header,
wrong scope, body hash mismatch, signature mismatch: then the detail ends with the canonical
request the gate computed, to compare with the signer's). A request that passes goes to the app with
the verified identity in `scope["mcpgw.sigv4"]` and in the context variable `current_identity`:
{"access_key_id", "role_arn", "assumed_role_arn", "session_name", "source_identity", "tags",
"expires_at", "action"}.
"""

from __future__ import annotations

import contextvars
import hashlib
import hmac
import json
import re
import threading
import time
from typing import Any

import anyio
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.compat import HTTPHeaders
from botocore.credentials import Credentials

import moto_setup

MAX_SKEW = 300  # seconds between X-Amz-Date and now
ALGORITHM = "AWS4-HMAC-SHA256"

current_identity: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "sigv4_identity", default=None
)


class Rejected(Exception):
    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class _Recompute(SigV4Auth):
    """botocore's SigV4 over exactly the headers the client said it signed (botocore's own
    selection would add or drop some, e.g. it never signs User-Agent)."""

    def __init__(self, credentials: Credentials, service: str, region: str, signed: list[str]):
        super().__init__(credentials, service, region)
        self._signed = signed

    def headers_to_sign(self, request: AWSRequest) -> HTTPHeaders:
        out = HTTPHeaders()
        for name in self._signed:
            for value in request.headers.get_all(name) or []:
                out[name] = value  # HTTPHeaders appends: repeated headers stay repeated
        return out


def _parse_authorization(value: str) -> tuple[str, list[str], list[str], str]:
    """-> (access key id, scope [date, region, service, terminator], signed headers, signature)."""
    if not value.startswith(ALGORITHM + " "):
        raise Rejected("unsigned", "no AWS4-HMAC-SHA256 Authorization header")
    fields = {}
    for part in value[len(ALGORITHM) + 1 :].split(","):
        k, sep, v = part.strip().partition("=")
        if sep:
            fields[k] = v
    try:
        cred = fields["Credential"].split("/")
        signed = fields["SignedHeaders"].split(";")
        signature = fields["Signature"]
    except KeyError as e:
        raise Rejected("bad signature", f"Authorization lacks {e.args[0]}") from None
    if len(cred) != 5 or not re.fullmatch(r"[0-9a-f]{64}", signature):
        raise Rejected("bad signature", "malformed Credential or Signature")
    return cred[0], cred[1:], signed, signature


def _amz_epoch(value: str) -> int:
    try:
        return moto_setup._amz_date_epoch(value) or 0
    except (TypeError, ValueError):
        return 0


class IssuedCredentials:
    """What moto issued, by access key id; re-read from moto on a miss (one reader at a time)."""

    def __init__(self, moto: str):
        self.moto = moto
        self._by_key: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def get(self, akid: str) -> dict[str, Any] | None:
        rec = self._by_key.get(akid)
        if rec is not None:
            return rec
        with self._lock:
            rec = self._by_key.get(akid)
            if rec is None:
                self._reload()
                rec = self._by_key.get(akid)
        return rec

    def _reload(self) -> None:
        now = int(time.time())
        fresh = {}
        for r in moto_setup.issued(self.moto):
            akid = r["access_key_id"]
            if akid in self._by_key:  # keep what was first seen
                fresh[akid] = self._by_key[akid]
                continue
            if r.get("expires_at") is None and r.get("recorded"):
                # An unsigned STS call (web identity) has no date on record: count from now,
                # an upper bound (moto minted it before the first call that used it).
                r["expires_at"] = now + (r.get("duration_seconds") or moto_setup.DEFAULT_DURATION)
                r["expires_basis"] = "first seen by the gate"
            fresh[akid] = r
        self._by_key = fresh


def verify(
    issued: IssuedCredentials,
    region: str,
    service: str,
    method: str,
    scheme: str,
    raw_path: bytes,
    query: bytes,
    headers: list[tuple[bytes, bytes]],
    body: bytes,
    now: float | None = None,
) -> dict[str, Any]:
    """Checks one request; returns the verified identity or raises `Rejected`."""
    now = time.time() if now is None else now
    hdrs = HTTPHeaders()
    for k, v in headers:
        hdrs[k.decode("latin-1").lower()] = v.decode("latin-1")

    auth = hdrs.get("authorization")
    if not auth:
        raise Rejected("unsigned", "no Authorization header")
    akid, scope, signed, signature = _parse_authorization(auth)
    amz_date = hdrs.get("x-amz-date")
    if not amz_date or not _amz_epoch(amz_date):
        raise Rejected("bad signature", "no valid X-Amz-Date header")

    rec = issued.get(akid)
    if rec is None:
        raise Rejected("unknown key", f"moto issued no access key {akid}")
    token = hdrs.get("x-amz-security-token")
    if token is None:
        raise Rejected("missing token", "no X-Amz-Security-Token header")
    if not hmac.compare_digest(token.encode(), (rec.get("session_token") or "").encode()):
        raise Rejected("bad token", f"X-Amz-Security-Token is not the session token issued with {akid}")

    if scope[1] != region or scope[2] != service or scope[3] != "aws4_request":
        raise Rejected("bad signature", f"credential scope {'/'.join(scope)} is not */{region}/{service}/aws4_request")
    if scope[0] != amz_date[:8]:
        raise Rejected("bad signature", f"scope date {scope[0]} is not X-Amz-Date's ({amz_date})")
    skew = now - _amz_epoch(amz_date)
    if abs(skew) > MAX_SKEW:
        raise Rejected("expired", f"X-Amz-Date {amz_date} is {int(skew)} s from now (limit {MAX_SKEW} s)")
    expires = rec.get("expires_at")
    if expires is None:
        raise Rejected("expired", f"no expiry on record for {akid}: is moto's recorder off (MOTO_ENABLE_RECORDING=1)?")
    if now >= expires:
        raise Rejected("expired", f"credentials {akid} expired {int(now - expires)} s ago")

    declared = hdrs.get("x-amz-content-sha256")
    if declared is not None and declared != hashlib.sha256(body).hexdigest():
        raise Rejected("bad signature", f"X-Amz-Content-SHA256 {declared!r} is not the body's SHA-256")

    host = hdrs.get("host") or ""
    url = f"{scheme}://{host}{raw_path.decode('latin-1')}"
    if query:
        url += "?" + query.decode("latin-1")
    req = AWSRequest(method=method, url=url, data=body)
    req.headers = hdrs
    req.context["timestamp"] = amz_date
    creds = Credentials(akid, rec["secret_access_key"], rec.get("session_token"))
    signer = _Recompute(creds, service, region, signed)
    canonical = signer.canonical_request(req)
    expected = signer.signature(signer.string_to_sign(req, canonical), req)
    if not hmac.compare_digest(expected.encode(), signature.encode()):
        # The canonical request holds no secret, and is what to diff against the signer's.
        raise Rejected("bad signature", f"signature does not match; canonical request:\n{canonical}")

    return {
        "access_key_id": akid,
        "role_arn": rec.get("role_arn"),
        "assumed_role_arn": rec.get("assumed_role_arn"),
        "session_name": rec.get("session_name"),
        "source_identity": rec.get("source_identity"),
        "tags": rec.get("tags"),
        "expires_at": expires,
        "action": rec.get("action"),
    }


class SigV4Gate:
    """The ASGI middleware: non-HTTP scopes (lifespan) pass through untouched."""

    def __init__(self, app: Any, moto: str, region: str, service: str):
        self.app = app
        self.issued = IssuedCredentials(moto)
        self.region = region
        self.service = service

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # The whole body first: the signature covers it. Then hand the app the same bytes.
        chunks = []
        while True:
            msg = await receive()
            if msg["type"] == "http.disconnect":
                return
            chunks.append(msg.get("body", b""))
            if not msg.get("more_body", False):
                break
        body = b"".join(chunks)
        try:
            identity = await anyio.to_thread.run_sync(
                verify,
                self.issued,
                self.region,
                self.service,
                scope["method"],
                scope.get("scheme", "http"),
                scope.get("raw_path") or scope["path"].encode(),
                scope.get("query_string", b""),
                scope["headers"],
                body,
            )
        except Rejected as e:
            await _reject(send, e)
            return
        except Exception as e:  # moto unreachable and the like: fail closed, say why
            await _reject(send, Rejected("unknown key", f"cannot read moto's records: {e!r}"))
            return

        replayed = False

        async def replay() -> dict[str, Any]:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        scope["mcpgw.sigv4"] = identity
        token = current_identity.set(identity)
        try:
            await self.app(scope, replay, send)
        finally:
            current_identity.reset(token)


async def _reject(send: Any, e: Rejected) -> None:
    body = json.dumps({"error": e.reason, "detail": e.detail}).encode()
    await send({
        "type": "http.response.start",
        "status": 403,
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
    })
    await send({"type": "http.response.body", "body": body})
