// The official TypeScript SDK client answering alibridge's `--pin-tools` question, used by
// tests/e2e/pinning_peers.rs:
//
//   node pin_client.mjs <path-to-alibridge> <accept|decline> <url> [alibridge args…]
//   node pin_client.mjs <path-to-alibridge> <http:accept|http:decline> <proxy url>
//
// Connects through the bridge (stdio) declaring elicitation, lists the tools, waits for the
// bridge's `elicitation/create` about withheld tools and answers it (accept: `confirm` ticked;
// decline). After accepting it waits for `notifications/tools/list_changed`; then it lists
// again and calls `echo`. With `http:` it connects to `alibridge proxy` over Streamable HTTP
// instead: the proxy asks inside the listing's own answer, so `before` is the listing after
// the answer and no list_changed is awaited. Prints ONE JSON object:
// `{"ok":true, before:[names], asked:[{id,message,schema}], listChanged:n, after:[names],
//   call:{isError,text}|null, callError:"…"|null}` (or `{"ok":false,…,"error":…}`, exit 1).
// The bridge's stderr passes through.
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import {
  ElicitRequestSchema,
  ToolListChangedNotificationSchema,
} from "@modelcontextprotocol/sdk/types.js";

const [bridge, modeArg, ...bridgeArgs] = process.argv.slice(2);
const http = modeArg.startsWith("http:");
const mode = modeArg.replace(/^http:/, "");
const summary = { mode, http, asked: [], listChanged: 0, call: null, callError: null };
const STEP_MS = 20_000;

/** A promise and its resolver. */
function signal() {
  let resolve;
  const promise = new Promise((r) => (resolve = r));
  return { promise, resolve };
}

/** `promise`, or a rejection naming `what` after STEP_MS. */
function within(promise, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), STEP_MS);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

const names = (r) => r.tools.map((t) => t.name);
const text = (r) => r.content?.find((c) => c.type === "text")?.text ?? null;

async function main() {
  if (mode !== "accept" && mode !== "decline") throw new Error(`mode: ${mode}`);
  const asked = signal();
  const changed = signal();
  const client = new Client(
    { name: "alibridge-pin-client", version: "0.0.0" },
    { capabilities: { elicitation: {} } },
  );
  client.setRequestHandler(ElicitRequestSchema, async (req, extra) => {
    summary.asked.push({
      id: extra.requestId,
      message: req.params.message,
      schema: req.params.requestedSchema,
    });
    asked.resolve();
    return mode === "accept"
      ? { action: "accept", content: { confirm: true } }
      : { action: "decline" };
  });
  client.setNotificationHandler(ToolListChangedNotificationSchema, async () => {
    summary.listChanged += 1;
    changed.resolve();
  });
  summary.step = "connect";
  await client.connect(
    http
      ? new StreamableHTTPClientTransport(new URL(bridgeArgs[0]))
      : new StdioClientTransport({
          command: bridge,
          args: bridgeArgs,
          env: { ...process.env },
          stderr: "inherit",
        }),
  );
  summary.step = "list";
  summary.before = names(await client.listTools());
  summary.step = "question";
  await within(asked.promise, "the bridge's elicitation/create");
  if (mode === "accept" && !http) {
    summary.step = "list_changed";
    await within(changed.promise, "notifications/tools/list_changed");
  }
  summary.step = "list again";
  summary.after = names(await client.listTools());
  summary.step = "call";
  try {
    const r = await client.callTool({ name: "echo", arguments: { text: "from-sdk" } });
    summary.call = { isError: !!r.isError, text: text(r) };
  } catch (err) {
    summary.callError = String(err?.message ?? err);
  }
  await client.close();
  delete summary.step;
}

try {
  await main();
  console.log(JSON.stringify({ ok: true, ...summary }));
} catch (err) {
  console.log(JSON.stringify({ ok: false, ...summary, error: String(err?.stack ?? err) }));
  process.exitCode = 1;
}
