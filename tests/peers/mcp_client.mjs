// MCP test client on the official TypeScript SDK (npm @modelcontextprotocol/sdk 1.32).
//
//   node mcp_client.mjs --url URL [--transport streamableHttp|sse] [--scenario python|everything]
//
// Runs one fixed scenario and prints ONE JSON line of normalized results (no ids, session ids
// or timings), so a direct run and a run through a proxy compare equal. On failure it prints
// {"error": "..."} and exits 1.
//
//   --scenario python      against tests/peers/mcp_server.py (tools echo/add/slow_count/big/
//                          cancelled_count, resource test://greeting, prompt greet)
//   --scenario everything  against @modelcontextprotocol/server-everything (tools echo/get-sum/
//                          trigger-long-running-operation, its static document resources,
//                          simple-prompt)
//
// This SDK speaks only the handshake era (initialize, Mcp-Session-Id; LATEST_PROTOCOL_VERSION
// 2025-11-25); the session is ended with DELETE (terminateSession) for streamable HTTP.
// TLS: Node's fetch trusts NODE_EXTRA_CA_CERTS (read once at start-up) on top of its bundled roots.
//
// It must sit next to node_modules (ESM resolves packages from the script's own directory):
// the test harness copies it into <target dir>/peers/node/.

import { createHash } from "node:crypto";
import { parseArgs } from "node:util";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { SSEClientTransport } from "@modelcontextprotocol/sdk/client/sse.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";

const ECHO_TEXT = "hello through mcpgw: ünïcödé ✓";

const { values: args } = parseArgs({
  options: {
    url: { type: "string" },
    transport: { type: "string", default: "streamableHttp" },
    scenario: { type: "string", default: "python" },
    timeout: { type: "string", default: "60" },
  },
});

const textOf = (result) =>
  (result?.content ?? [])
    .filter((c) => c.type === "text")
    .map((c) => c.text)
    .join("");

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Calls a long-running tool, aborts it after the first progress notification (the SDK then
// sends notifications/cancelled), and reports what was seen.
async function cancelledCall(client, name, toolArgs) {
  const ac = new AbortController();
  let gotProgress = false;
  let completed = false;
  let abortedError = null;
  const first = new Promise((resolve) => {
    const call = client.callTool({ name, arguments: toolArgs }, undefined, {
      signal: ac.signal,
      timeout: 60000,
      onprogress: () => {
        gotProgress = true;
        resolve();
      },
    });
    call.then(
      () => {
        completed = true;
        resolve();
      },
      (e) => {
        abortedError = e;
        resolve();
      },
    );
    setTimeout(resolve, 10000);
  });
  await first;
  ac.abort("test cancel");
  // Let the rejection land.
  for (let i = 0; i < 50 && !completed && abortedError === null; i++) await sleep(20);
  return { progress_before_cancel: gotProgress, completed, client_aborted: abortedError !== null };
}

async function pythonScenario(client, out) {
  const tools = await client.listTools();
  out.tools = tools.tools.map((t) => t.name).sort();

  let r = await client.callTool({ name: "echo", arguments: { text: ECHO_TEXT } });
  out.echo = textOf(r);
  out.echo_ok = out.echo === ECHO_TEXT && !r.isError;

  r = await client.callTool({ name: "add", arguments: { a: 40, b: 2 } });
  out.add = textOf(r);

  const progress = [];
  r = await client.callTool({ name: "slow_count", arguments: { n: 5, delay: 0.1 } }, undefined, {
    onprogress: (p) => progress.push([p.progress, p.total ?? null, p.message ?? null]),
  });
  out.slow_count = textOf(r);
  out.progress = progress;

  const before = Number(textOf(await client.callTool({ name: "cancelled_count", arguments: {} })));
  out.cancel = await cancelledCall(client, "slow_count", { n: 100, delay: 0.1 });
  out.cancel.server_saw_cancel = false;
  for (let i = 0; i < 100; i++) {
    const after = Number(textOf(await client.callTool({ name: "cancelled_count", arguments: {} })));
    if (after > before) {
      out.cancel.server_saw_cancel = true;
      break;
    }
    await sleep(50);
  }

  const res = await client.listResources();
  out.resources = res.resources.map((x) => x.uri).sort();
  const rr = await client.readResource({ uri: "test://greeting" });
  out.greeting = rr.contents.map((c) => c.text ?? "").join("");

  const prompts = await client.listPrompts();
  out.prompts = prompts.prompts.map((p) => p.name).sort();
  const gp = await client.getPrompt({ name: "greet", arguments: { name: "Ada" } });
  out.prompt = gp.messages.map((m) => [m.role, m.content?.text ?? null]);

  r = await client.callTool({ name: "big", arguments: { n: 512 } });
  const body = Buffer.from(textOf(r), "utf8");
  out.big = { bytes: body.length, sha256: createHash("sha256").update(body).digest("hex") };
}

async function everythingScenario(client, out) {
  const tools = await client.listTools();
  out.tools = tools.tools.map((t) => t.name).sort();

  let r = await client.callTool({ name: "echo", arguments: { message: ECHO_TEXT } });
  out.echo = textOf(r);
  out.echo_ok = out.echo === `Echo: ${ECHO_TEXT}` && !r.isError;

  r = await client.callTool({ name: "get-sum", arguments: { a: 40, b: 2 } });
  out.add = textOf(r);

  const progress = [];
  r = await client.callTool(
    { name: "trigger-long-running-operation", arguments: { duration: 0.5, steps: 5 } },
    undefined,
    { onprogress: (p) => progress.push([p.progress, p.total ?? null, p.message ?? null]) },
  );
  out.slow_count = textOf(r);
  out.progress = progress;

  out.cancel = await cancelledCall(client, "trigger-long-running-operation", { duration: 30, steps: 60 });

  const res = await client.listResources();
  out.resources = res.resources.map((x) => x.uri).sort();
  const uri = "demo://resource/static/document/features.md";
  const rr = await client.readResource({ uri });
  const doc = Buffer.from(rr.contents.map((c) => c.text ?? "").join(""), "utf8");
  out.document = { uri, bytes: doc.length, sha256: createHash("sha256").update(doc).digest("hex") };

  const prompts = await client.listPrompts();
  out.prompts = prompts.prompts.map((p) => p.name).sort();
  const gp = await client.getPrompt({ name: "simple-prompt", arguments: {} });
  out.prompt = gp.messages.map((m) => [m.role, m.content?.text ?? null]);
}

async function main() {
  if (!args.url) throw new Error("--url is required");
  const url = new URL(args.url);
  const kind = { streamableHttp: "streamableHttp", "streamable-http": "streamableHttp", sse: "sse" }[args.transport];
  if (!kind) throw new Error(`unknown --transport ${args.transport}`);
  const transport = kind === "sse" ? new SSEClientTransport(url) : new StreamableHTTPClientTransport(url);
  const client = new Client({ name: "mcpgw-test-client-ts", version: "1.0.0" }, { capabilities: {} });
  const out = { transport: kind, scenario: args.scenario, era: "session" };

  let negotiated = null;
  const setVersion = transport.setProtocolVersion.bind(transport);
  transport.setProtocolVersion = (v) => {
    negotiated = v;
    setVersion(v);
  };
  await client.connect(transport);
  out.protocol_version = negotiated;
  out.server_name = client.getServerVersion()?.name ?? null;
  if (args.scenario === "everything") await everythingScenario(client, out);
  else if (args.scenario === "python") await pythonScenario(client, out);
  else throw new Error(`unknown --scenario ${args.scenario}`);

  if (kind === "streamableHttp") {
    await transport.terminateSession();
    out.session_deleted = transport.sessionId === undefined;
  }
  await client.close();
  out.closed = true;
  return out;
}

const limit = Number(args.timeout) * 1000;
let timer;
try {
  const out = await Promise.race([
    main(),
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`scenario timed out after ${args.timeout}s`)), limit);
    }),
  ]);
  clearTimeout(timer);
  const top = {};
  for (const k of Object.keys(out).sort()) top[k] = out[k];
  process.stdout.write(JSON.stringify(top) + "\n");
  process.exit(0);
} catch (e) {
  process.stdout.write(JSON.stringify({ error: `${e?.name ?? "Error"}: ${e?.message ?? e}` }) + "\n");
  process.exit(1);
}
