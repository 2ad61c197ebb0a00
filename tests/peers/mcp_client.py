"""MCP test client on the official Python SDK (PyPI `mcp` 2.x, `mcp.Client`).

    mcp_client.py --url URL [--transport streamable-http|sse]
                  [--protocol-era session|stateless|auto] [--ca-file PEM]
                  [--bearer TOKEN | --oauth-client-id ID --oauth-client-secret S [--oauth-issuer URL]]

Runs one fixed scenario against tests/peers/mcp_server.py and prints ONE JSON line of
normalized results (no ids, session ids or timings), so a direct run and a run through a
proxy compare equal. On failure it prints {"error": "..."} and exits 1.

Protocol eras (SDK `Client(mode=...)`):
  session    mode="legacy": initialize + notifications/initialized, Mcp-Session-Id,
             DELETE of the session on close (streamable HTTP).
  stateless  mode="2026-07-28": no handshake, no session; every POST carries
             Mcp-Protocol-Version: 2026-07-28 (+ Mcp-Method / Mcp-Name) and the version
             and capabilities in params._meta.
  auto       the SDK default: server/discover first, falls back to initialize when the
             server does not speak 2026-07-28.

Auth (neither option: no Authorization header, as before):
  --bearer TOKEN   sends "Authorization: Bearer TOKEN" on every HTTP request of either transport.
  --oauth-client-* the SDK's ClientCredentialsOAuthProvider (mcp.client.auth.extensions.
             client_credentials): on a 401 it reads resource_metadata from WWW-Authenticate,
             fetches the RFC 9728 protected resource metadata, then the authorization server's
             metadata, gets a token with client_credentials (client_secret_basic,
             resource=<the resource it protects>) and retries. --oauth-issuer pins the
             authorization server the credentials may be sent to.

TLS: the SDK's httpx2 client trusts SSL_CERT_FILE / SSL_CERT_DIR when set (httpcore2
default_ssl_context); --ca-file sets SSL_CERT_FILE for this process.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import sys
from typing import Any

import anyio

SLOW_N = 5
SLOW_DELAY = 0.1
BIG_KIB = 512
ECHO_TEXT = "hello through mcpgw: ünïcödé ✓"


def text_of(result: Any) -> str:
    """Concatenated text content of a tool / prompt / resource result."""
    parts = []
    for c in getattr(result, "content", None) or []:
        if getattr(c, "type", None) == "text":
            parts.append(c.text)
    return "".join(parts)


class MemoryTokenStorage:
    """TokenStorage for the OAuth provider: this process only."""

    def __init__(self) -> None:
        self.tokens: Any = None
        self.client_info: Any = None

    async def get_tokens(self) -> Any:
        return self.tokens

    async def set_tokens(self, tokens: Any) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> Any:
        return self.client_info

    async def set_client_info(self, client_info: Any) -> None:
        self.client_info = client_info


def open_transport(url: str, transport: str, auth: dict[str, Any]) -> Any:
    """The SDK transport for URL, sending a bearer token or running OAuth when `auth` asks."""
    from mcp.client.sse import sse_client
    from mcp.client.streamable_http import streamable_http_client

    headers = {"Authorization": f"Bearer {auth['bearer']}"} if auth.get("bearer") else None
    oauth = None
    if auth.get("client_id"):
        from mcp.client.auth.extensions.client_credentials import ClientCredentialsOAuthProvider

        oauth = ClientCredentialsOAuthProvider(
            server_url=url,
            storage=MemoryTokenStorage(),
            client_id=auth["client_id"],
            client_secret=auth["client_secret"],
            issuer=auth.get("issuer"),
        )
    if transport == "sse":
        return sse_client(url, headers=headers, auth=oauth)
    if headers is None and oauth is None:
        return streamable_http_client(url)
    return _authed_streamable_http(url, headers, oauth)


@contextlib.asynccontextmanager
async def _authed_streamable_http(url: str, headers: dict[str, str] | None, oauth: Any) -> Any:
    """streamable_http_client on the SDK's default httpx2 client plus headers / auth."""
    from mcp.client.streamable_http import streamable_http_client
    from mcp.shared._httpx_utils import create_mcp_http_client

    async with create_mcp_http_client(headers=headers, auth=oauth) as http:
        async with streamable_http_client(url, http_client=http) as streams:
            yield streams


async def scenario(url: str, transport: str, era: str, auth: dict[str, Any]) -> dict[str, Any]:
    from mcp import Client

    mode = {"session": "legacy", "stateless": "2026-07-28", "auto": "auto"}[era]
    target = open_transport(url, transport, auth)
    out: dict[str, Any] = {"transport": transport, "era": era}

    async with Client(target, mode=mode, read_timeout_seconds=30) as client:
        out["protocol_version"] = client.protocol_version
        info = client.server_info
        out["server_name"] = info.name if info is not None else None

        tools = await client.list_tools()
        out["tools"] = sorted(t.name for t in tools.tools)

        r = await client.call_tool("echo", {"text": ECHO_TEXT})
        out["echo"] = text_of(r)
        out["echo_ok"] = out["echo"] == ECHO_TEXT and not r.is_error

        r = await client.call_tool("add", {"a": 40, "b": 2})
        out["add"] = text_of(r)

        progress: list[list[Any]] = []

        async def on_progress(p: float, total: float | None, message: str | None) -> None:
            progress.append([p, total, message])

        r = await client.call_tool("slow_count", {"n": SLOW_N, "delay": SLOW_DELAY}, progress_callback=on_progress)
        out["slow_count"] = text_of(r)
        out["progress"] = progress

        out["cancel"] = await cancelled_call(client)

        res = await client.list_resources()
        out["resources"] = sorted(str(x.uri) for x in res.resources)
        rr = await client.read_resource("test://greeting")
        out["greeting"] = "".join(getattr(c, "text", "") for c in rr.contents)

        prompts = await client.list_prompts()
        out["prompts"] = sorted(p.name for p in prompts.prompts)
        gp = await client.get_prompt("greet", {"name": "Ada"})
        out["prompt"] = [[m.role, getattr(m.content, "text", None)] for m in gp.messages]

        r = await client.call_tool("big", {"n": BIG_KIB})
        body = text_of(r).encode()
        out["big"] = {"bytes": len(body), "sha256": hashlib.sha256(body).hexdigest()}
    # Leaving the Client closed the session (DELETE for a streamable-HTTP session).
    out["closed"] = True
    return out


async def cancelled_call(client: Any) -> dict[str, Any]:
    """Starts a long slow_count, cancels it after the first progress, checks the server saw it."""
    before = int(text_of(await client.call_tool("cancelled_count", {})))
    first = anyio.Event()
    finished = False

    async def on_progress(p: float, total: float | None, message: str | None) -> None:
        first.set()

    async def call(scope: anyio.CancelScope) -> None:
        nonlocal finished
        with scope:
            await client.call_tool("slow_count", {"n": 100, "delay": 0.1}, progress_callback=on_progress)
            finished = True

    scope = anyio.CancelScope()
    got_progress = False
    async with anyio.create_task_group() as tg:
        tg.start_soon(call, scope)
        with anyio.move_on_after(10):
            await first.wait()
            got_progress = True
        scope.cancel()

    seen = False
    with anyio.move_on_after(5):
        while True:
            after = int(text_of(await client.call_tool("cancelled_count", {})))
            if after > before:
                seen = True
                break
            await anyio.sleep(0.05)
    return {"progress_before_cancel": got_progress, "completed": finished, "server_saw_cancel": seen}


async def call_one(
    url: str, transport: str, era: str, auth: dict[str, Any], tool: str, arguments: dict[str, Any]
) -> dict[str, Any]:
    """One tool call; the result exactly as the client received it."""
    from mcp import Client

    mode = {"session": "legacy", "stateless": "2026-07-28", "auto": "auto"}[era]
    target = open_transport(url, transport, auth)
    async with Client(target, mode=mode, read_timeout_seconds=30) as client:
        r = await client.call_tool(tool, arguments)
        return {
            "content": [c.model_dump(mode="json", exclude_none=True) for c in r.content],
            "structuredContent": r.structured_content,
            "isError": r.is_error,
        }


async def steps(url: str, transport: str, era: str, auth: dict[str, Any], plan: list[dict[str, Any]]) -> dict[str, Any]:
    """Runs a plan in ONE client session; each step's outcome in order.

    Steps: {"list": true} -> {"tools": [names]}; {"parallel": N, "call": TOOL, "args": {...}}
    -> {"texts": [...]} (N calls at once); {"call": TOOL, "args": {...}} ->
    {"result": {...}} or {"error": {"code", "message", "data"}} for a JSON-RPC error.
    """
    from mcp import Client
    from mcp.shared.exceptions import MCPError

    mode = {"session": "legacy", "stateless": "2026-07-28", "auto": "auto"}[era]
    target = open_transport(url, transport, auth)
    results: list[dict[str, Any]] = []
    async def sampling(context: Any, params: Any) -> Any:
        # A stand-in model: answers every sampling request with a fixed text.
        import mcp_types as t

        return t.CreateMessageResult(
            role="assistant", content=t.TextContent(type="text", text="42"), model="test-model"
        )

    async with Client(target, mode=mode, read_timeout_seconds=30, sampling_callback=sampling) as client:
        for step in plan:
            try:
                if step.get("list"):
                    tools = await client.list_tools(cache_mode="bypass")
                    results.append({"tools": sorted(t.name for t in tools.tools)})
                elif step.get("parallel"):
                    # N calls at once in this session: their texts (errors as "error: ...").
                    texts: list[str] = [""] * int(step["parallel"])

                    async def one(i: int) -> None:
                        try:
                            r = await client.call_tool(step["call"], step.get("args", {}))
                            texts[i] = text_of(r)
                        except MCPError as e:
                            texts[i] = f"error: {e.code} {e.message}"

                    async with anyio.create_task_group() as tg:
                        for i in range(len(texts)):
                            tg.start_soon(one, i)
                    results.append({"texts": texts})
                else:
                    r = await client.call_tool(step["call"], step.get("args", {}))
                    results.append(
                        {"result": {"text": text_of(r), "isError": r.is_error}}
                    )
            except MCPError as e:
                results.append({"error": {"code": e.code, "message": e.message, "data": e.data}})
    return {"steps": results}


def describe(e: BaseException) -> str:
    if isinstance(e, BaseExceptionGroup):
        return "; ".join(describe(x) for x in e.exceptions)
    return f"{type(e).__name__}: {e}"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", required=True)
    p.add_argument("--transport", choices=["streamable-http", "sse"], default="streamable-http")
    p.add_argument("--protocol-era", choices=["session", "stateless", "auto"], default="session")
    p.add_argument("--ca-file", help="PEM bundle to trust (default: SSL_CERT_FILE, else the system store)")
    p.add_argument("--timeout", type=float, default=60, help="whole-scenario bound, seconds")
    p.add_argument("--call", metavar="TOOL", help="instead of the scenario: call TOOL once, print its result")
    p.add_argument("--args", default="{}", help="with --call: the arguments as JSON")
    p.add_argument("--steps", metavar="JSON", help="instead of the scenario: run these steps in one session")
    p.add_argument("--bearer", metavar="TOKEN", help="send Authorization: Bearer TOKEN on every request")
    p.add_argument("--oauth-client-id", help="OAuth client_credentials via the SDK (with --oauth-client-secret)")
    p.add_argument("--oauth-client-secret")
    p.add_argument("--oauth-issuer", help="with --oauth-client-id: the only authorization server to use")
    args = p.parse_args()
    if args.ca_file:
        os.environ["SSL_CERT_FILE"] = args.ca_file
    if bool(args.oauth_client_id) != bool(args.oauth_client_secret):
        p.error("--oauth-client-id and --oauth-client-secret go together")
    if args.bearer and args.oauth_client_id:
        p.error("--bearer and --oauth-client-id exclude each other")
    auth = {
        "bearer": args.bearer,
        "client_id": args.oauth_client_id,
        "client_secret": args.oauth_client_secret,
        "issuer": args.oauth_issuer,
    }

    async def bounded() -> dict[str, Any]:
        with anyio.fail_after(args.timeout):
            if args.steps:
                return await steps(args.url, args.transport, args.protocol_era, auth, json.loads(args.steps))
            if args.call:
                return await call_one(
                    args.url, args.transport, args.protocol_era, auth, args.call, json.loads(args.args)
                )
            return await scenario(args.url, args.transport, args.protocol_era, auth)

    try:
        out = anyio.run(bounded)
    except BaseException as e:  # noqa: BLE001 - report everything as one line
        if isinstance(e, KeyboardInterrupt):
            raise
        print(json.dumps({"error": describe(e)}), flush=True)
        return 1
    print(json.dumps(out, sort_keys=True, ensure_ascii=False), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
