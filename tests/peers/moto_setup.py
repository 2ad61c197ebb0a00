"""moto (`moto_server`) as the AWS STS of the end-to-end tests: setup and read-back.

    moto_setup.py --endpoint URL gateway-key [--region R] [--check]
    moto_setup.py --endpoint URL auth on|off
    moto_setup.py --endpoint URL issued
    moto_setup.py --endpoint URL calls

Run it inside the test's network namespace (moto listens on its loopback), with the peers venv
(boto3). Each command prints one JSON document on stdout.

`gateway-key`: the IAM world of the AccessDenied tests, then IAM authorization switched on.
  Creates user `mcpgw-gateway` with an access key and an inline policy allowing sts:AssumeRole,
  sts:TagSession and sts:SetSourceIdentity on role `mcpgw-allowed` only; roles `mcpgw-allowed`
  and `mcpgw-denied`, both trusting that user for those three actions. Then POSTs "0" to
  `/moto-api/reset-auth`: from the next request on, moto verifies every SigV4 signature (against
  the IAM secret of the key) and evaluates the caller's IAM policies and, for a role of its own
  account, the role's trust policy. AssumeRole on `mcpgw-denied` with the key then fails with a
  real `AccessDenied` (HTTP 403); on `mcpgw-allowed` it succeeds. (moto's default is no
  authorization at all: INITIAL_NO_AUTH_ACTION_COUNT is infinite until changed; the setup calls
  run before the switch, so they need no credentials of their own.)
  Prints {"access_key_id", "secret_access_key", "user_arn", "role_allowed_arn",
  "role_denied_arn", "region"}. `--check` also proves both outcomes (it mints one credential on
  the allowed role, session "mcpgw-setup-check", which then shows in `issued`).
  Caveat: with authorization on, an UNSIGNED AssumeRoleWithWebIdentity (how SDKs send it) makes
  moto 5.2 answer 500 (KeyError HTTP_AUTHORIZATION): web-identity tests want it off.

`auth on|off`: switches moto's IAM authorization (POST /moto-api/reset-auth "0" or "inf").

`calls`: every AssumeRole / AssumeRoleWithWebIdentity request moto received, failed ones included,
  in order: [{"action", "params", "amz_date", "caller"}] (null when the recorder is off).

`issued`: the temporary credentials moto issued, one object each, oldest first. moto keeps only
  part of an AssumeRole in `/moto-api/data.json` (path `sts.AssumedRole[]`): access_key_id,
  secret_access_key, session_token, role_arn, session_name, arn (the assumed-role ARN), user_id,
  account_id, region_name, policy (the inline session policy, verbatim), external_id. It
  drops SourceIdentity, Tags, TransitiveTagKeys and WebIdentityToken on the floor, and its
  `expiration` (a datetime) does not serialize, so it is missing too. Those come from moto's
  request recorder (`moto_server` started with MOTO_ENABLE_RECORDING=1; GET
  /moto-api/recorder/download-recording gives one JSON line per request: method, url,
  headers, body): each data.json record is joined to the oldest unused recorded AssumeRole* call
  with the same RoleArn, RoleSessionName and Policy. `expires_at` is the call's X-Amz-Date plus
  DurationSeconds (moto's default 3600): at most a second or so before moto's own expiration.
  An unsigned call (web identity) has no X-Amz-Date, so its requested_at/expires_at are null.
  Fields: see `issued()` below.
"""

from __future__ import annotations

import argparse
import base64
import calendar
import json
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

USER = "mcpgw-gateway"
ROLE_ALLOWED = "mcpgw-allowed"
ROLE_DENIED = "mcpgw-denied"
STS_ACTIONS = ["sts:AssumeRole", "sts:TagSession", "sts:SetSourceIdentity"]
ASSUME_ACTIONS = ("AssumeRole", "AssumeRoleWithWebIdentity")
DEFAULT_DURATION = 3600  # moto's (and STS's) default DurationSeconds


# ---------------------------------------------------------------------------
# moto's HTTP API
# ---------------------------------------------------------------------------


def _get(url: str, timeout: float = 10) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read()


def data_json(endpoint: str) -> dict[str, Any]:
    """`/moto-api/data.json`: every model instance moto tracks, by service and class."""
    return json.loads(_get(endpoint.rstrip("/") + "/moto-api/data.json"))


def recording(endpoint: str) -> list[dict[str, Any]] | None:
    """moto's request log, or None when the recorder is off (the file does not exist)."""
    try:
        text = _get(endpoint.rstrip("/") + "/moto-api/recorder/download-recording").decode()
    except urllib.error.HTTPError:
        return None
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def set_auth(endpoint: str, on: bool) -> dict[str, Any]:
    """INITIAL_NO_AUTH_ACTION_COUNT = 0 (authorize every request from now on) or infinity."""
    req = urllib.request.Request(
        endpoint.rstrip("/") + "/moto-api/reset-auth",
        data=b"0" if on else b"inf",
        method="POST",
        # Not form-encoded, or Flask moves the body out of `request.data` (moto reads that).
        headers={"Content-Type": "text/plain"},
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


# ---------------------------------------------------------------------------
# Issued credentials
# ---------------------------------------------------------------------------


def _header(headers: dict[str, str], name: str) -> str | None:
    name = name.lower()
    for k, v in headers.items():
        if k.lower() == name:
            return v
    return None


def _amz_date_epoch(value: str | None) -> int | None:
    """20261126T140229Z -> seconds since the epoch."""
    if not value:
        return None
    try:
        return calendar.timegm(time.strptime(value, "%Y%m%dT%H%M%SZ"))
    except ValueError:
        return None


def _members(params: dict[str, str], prefix: str, fields: tuple[str, ...] | None = None) -> list[Any]:
    """Query-protocol lists: `Tags.member.1.Key`, `Tags.member.1.Value`, ... in index order."""
    out = []
    i = 1
    while True:
        base = f"{prefix}.member.{i}"
        if fields is None:
            if base not in params:
                return out
            out.append(params[base])
        else:
            if not any(f"{base}.{f}" in params for f in fields):
                return out
            out.append([params.get(f"{base}.{f}") for f in fields])
        i += 1


def sts_calls(endpoint: str) -> list[dict[str, Any]] | None:
    """Recorded AssumeRole / AssumeRoleWithWebIdentity requests (successful or not), in order."""
    entries = recording(endpoint)
    if entries is None:
        return None
    calls = []
    for e in entries:
        if e.get("method") != "POST" or urllib.parse.urlsplit(e.get("url", "")).path not in ("", "/"):
            continue
        body = e.get("body") or ""
        if e.get("body_encoded"):
            body = base64.b64decode(body).decode("utf-8", "replace")
        params = dict(urllib.parse.parse_qsl(body, keep_blank_values=True))
        action = params.get("Action")
        if action not in ASSUME_ACTIONS:
            continue
        headers = e.get("headers") or {}
        auth = _header(headers, "Authorization") or ""
        caller = None
        if "Credential=" in auth:
            caller = auth.split("Credential=", 1)[1].split("/", 1)[0]
        calls.append({"action": action, "params": params, "amz_date": _header(headers, "X-Amz-Date"), "caller": caller})
    return calls


def issued(endpoint: str) -> list[dict[str, Any]]:
    """Every credential moto issued, joined with the recorded request that asked for it.

    Keys: access_key_id, secret_access_key, session_token, role_arn, session_name,
    assumed_role_arn, assumed_role_id, account_id, region_name, policy, external_id (from
    data.json); recorded (a request was found), action, source_identity, tags ([[key, value]]),
    transitive_tag_keys, policy_arns, duration_seconds (as sent, else null), requested_at and
    expires_at (epoch seconds, or null), web_identity_token, provider_id, caller_access_key_id
    (the key that signed the STS call), params (every parameter as sent).
    """
    roles = data_json(endpoint).get("sts", {}).get("AssumedRole", [])
    calls = sts_calls(endpoint) or []
    used: set[int] = set()
    out = []
    for r in roles:
        call = None
        for i, c in enumerate(calls):
            p = c["params"]
            if (
                i not in used
                and p.get("RoleArn") == r.get("role_arn")
                and p.get("RoleSessionName") == r.get("session_name")
                and p.get("Policy") == r.get("policy")
            ):
                used.add(i)
                call = c
                break
        p = call["params"] if call else {}
        duration = int(p["DurationSeconds"]) if p.get("DurationSeconds") else None
        requested = _amz_date_epoch(call["amz_date"]) if call else None
        out.append({
            "access_key_id": r.get("access_key_id"),
            "secret_access_key": r.get("secret_access_key"),
            "session_token": r.get("session_token"),
            "role_arn": r.get("role_arn"),
            "session_name": r.get("session_name"),
            "assumed_role_arn": r.get("arn"),
            "assumed_role_id": r.get("user_id"),
            "account_id": r.get("account_id"),
            "region_name": r.get("region_name"),
            "policy": r.get("policy"),
            "external_id": r.get("external_id"),
            "recorded": call is not None,
            "action": call["action"] if call else None,
            "source_identity": p.get("SourceIdentity"),
            "tags": _members(p, "Tags", ("Key", "Value")),
            "transitive_tag_keys": _members(p, "TransitiveTagKeys"),
            "policy_arns": [a[0] for a in _members(p, "PolicyArns", ("arn",))],
            "duration_seconds": duration,
            "requested_at": requested,
            "expires_at": requested + (duration or DEFAULT_DURATION) if requested is not None else None,
            "web_identity_token": p.get("WebIdentityToken"),
            "provider_id": p.get("ProviderId"),
            "caller_access_key_id": call["caller"] if call else None,
            "params": p,
        })
    return out


# ---------------------------------------------------------------------------
# The AccessDenied world
# ---------------------------------------------------------------------------


def gateway_key(endpoint: str, region: str, check: bool) -> dict[str, Any]:
    import boto3

    def client(service: str, key: str = "setup", secret: str = "setup"):
        return boto3.client(
            service,
            endpoint_url=endpoint,
            region_name=region,
            aws_access_key_id=key,
            aws_secret_access_key=secret,
        )

    iam = client("iam")
    user_arn = iam.create_user(UserName=USER)["User"]["Arn"]
    trust = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"AWS": user_arn}, "Action": STS_ACTIONS}],
    }
    allowed = iam.create_role(RoleName=ROLE_ALLOWED, AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
    denied = iam.create_role(RoleName=ROLE_DENIED, AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
    iam.put_user_policy(
        UserName=USER,
        PolicyName="assume-allowed-only",
        PolicyDocument=json.dumps({
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": STS_ACTIONS, "Resource": allowed}],
        }),
    )
    key = iam.create_access_key(UserName=USER)["AccessKey"]
    set_auth(endpoint, True)
    out = {
        "access_key_id": key["AccessKeyId"],
        "secret_access_key": key["SecretAccessKey"],
        "user_arn": user_arn,
        "role_allowed_arn": allowed,
        "role_denied_arn": denied,
        "region": region,
    }
    if check:
        from botocore.exceptions import ClientError

        sts = client("sts", key["AccessKeyId"], key["SecretAccessKey"])
        args = {
            "RoleSessionName": "mcpgw-setup-check",
            "SourceIdentity": "setup-check",
            "Tags": [{"Key": "user", "Value": "setup-check"}],
            "Policy": json.dumps({
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}],
            }),
            "DurationSeconds": 900,
        }
        try:
            sts.assume_role(RoleArn=denied, **args)
            raise SystemExit("check failed: AssumeRole on the denied role succeeded")
        except ClientError as e:
            err = e.response["Error"]
            if err.get("Code") != "AccessDenied":
                raise SystemExit(f"check failed: denied role gave {err}") from e
            out["check_denied"] = err
        got = sts.assume_role(RoleArn=allowed, **args)
        out["check_allowed"] = {
            "access_key_id": got["Credentials"]["AccessKeyId"],
            "arn": got["AssumedRoleUser"]["Arn"],
        }
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--endpoint", required=True, help="moto_server URL, e.g. http://127.0.0.1:5000")
    sub = p.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("gateway-key", help="IAM user, two roles, then authorization on")
    g.add_argument("--region", default="us-east-1")
    g.add_argument("--check", action="store_true", help="prove AccessDenied on one role, success on the other")
    a = sub.add_parser("auth", help="switch moto's IAM authorization")
    a.add_argument("state", choices=["on", "off"])
    sub.add_parser("issued", help="temporary credentials moto issued, with what was asked")
    sub.add_parser("calls", help="recorded AssumeRole* requests, failed ones included")
    args = p.parse_args()

    if args.cmd == "gateway-key":
        out: Any = gateway_key(args.endpoint, args.region, args.check)
    elif args.cmd == "auth":
        out = set_auth(args.endpoint, args.state == "on")
    elif args.cmd == "calls":
        out = sts_calls(args.endpoint)
    else:
        out = issued(args.endpoint)
    json.dump(out, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
