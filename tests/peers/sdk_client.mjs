// A scripted MCP client built on the official TypeScript SDK, used by alibridge's e2e tests.
//
//   node sdk_client.mjs <path-to-alibridge> <url> [extra alibridge args…]
//
// Spawns alibridge over stdio (as a desktop client would), runs one scenario against
// @modelcontextprotocol/server-everything behind it, and prints ONE JSON object on stdout:
// `{"ok":true,…}` with what each step returned, or `{"ok":false,"step":…,"error":…}` (exit 1).
// The bridge's stderr is passed through to this process's stderr.
import { realpathSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import {
  CreateMessageRequestSchema,
  ElicitRequestSchema,
  ListRootsRequestSchema,
} from "@modelcontextprotocol/sdk/types.js";

/** Records the protocol version the SDK negotiated (the SDK hands it to the transport). */
class RecordingStdioTransport extends StdioClientTransport {
  setProtocolVersion(version) {
    this.protocolVersion = version;
  }
}

/** Runs the scenario over `transport`; returns the summary object (throws on failure). */
export async function runScenario(transport, summary = {}) {
  const counts = { sampling: 0, elicitation: 0, roots: 0 };
  const client = new Client(
    { name: "alibridge-sdk-client", version: "0.0.0" },
    { capabilities: { sampling: {}, elicitation: {}, roots: { listChanged: true } } },
  );
  client.setRequestHandler(CreateMessageRequestSchema, async (req) => {
    counts.sampling++;
    const asked = req.params.messages[0]?.content?.text ?? "";
    return {
      model: "alibridge-canned-model",
      role: "assistant",
      content: { type: "text", text: `canned reply to: ${asked}` },
      stopReason: "endTurn",
    };
  });
  client.setRequestHandler(ElicitRequestSchema, async () => {
    counts.elicitation++;
    return { action: "decline" };
  });
  client.setRequestHandler(ListRootsRequestSchema, async () => {
    counts.roots++;
    return { roots: [{ uri: "file:///tmp/alibridge-sdk-client", name: "scratch" }] };
  });

  // Every message the transport delivers, in arrival order, before the SDK dispatches it.
  const wire = [];
  let deliver;
  Object.defineProperty(transport, "onmessage", {
    configurable: true,
    get: () => deliver && ((msg) => (wire.push(msg), deliver(msg))),
    set: (fn) => (deliver = fn),
  });

  const step = async (name, fn) => {
    summary.step = name;
    summary[name] = await fn();
  };
  const text = (result) => result.content?.find((c) => c.type === "text")?.text;

  await step("initialize", async () => {
    await client.connect(transport);
    return {
      server: client.getServerVersion(),
      protocolVersion: transport.protocolVersion ?? null,
      capabilities: Object.keys(client.getServerCapabilities() ?? {}).sort(),
    };
  });
  await step("tools", async () => {
    const { tools } = await client.listTools();
    return { count: tools.length, names: tools.map((t) => t.name).sort() };
  });
  await step("echo", async () =>
    text(await client.callTool({ name: "echo", arguments: { message: "hello from the sdk" } })),
  );
  await step("sum", async () =>
    text(await client.callTool({ name: "get-sum", arguments: { a: 2, b: 40 } })),
  );
  await step("structured", async () => {
    const r = await client.callTool({ name: "get-structured-content", arguments: { location: "Chicago" } });
    return r.structuredContent;
  });
  await step("resourceLinks", async () => {
    const r = await client.callTool({ name: "get-resource-links", arguments: { count: 3 } });
    return r.content.filter((c) => c.type === "resource_link").length;
  });
  await step("resources", async () => {
    const { resources } = await client.listResources();
    const first = resources[0];
    const read = await client.readResource({ uri: first.uri });
    const dynamic = await client.readResource({ uri: "demo://resource/dynamic/text/7" });
    return {
      count: resources.length,
      read: { uri: read.contents[0].uri, mimeType: read.contents[0].mimeType, textLength: read.contents[0].text.length },
      dynamicText: dynamic.contents[0].text,
    };
  });
  await step("prompts", async () => {
    const { prompts } = await client.listPrompts();
    const simple = await client.getPrompt({ name: "simple-prompt" });
    const args = await client.getPrompt({ name: "args-prompt", arguments: { city: "Hangzhou" } });
    return {
      count: prompts.length,
      names: prompts.map((p) => p.name).sort(),
      simple: simple.messages[0].content.text,
      args: args.messages[0].content.text,
    };
  });
  await step("progress", async () => {
    const seen = [];
    const from = wire.length;
    const r = await client.callTool(
      { name: "trigger-long-running-operation", arguments: { duration: 0.3, steps: 3 } },
      undefined,
      { onprogress: (p) => seen.push(p.progress) },
    );
    // The SDK dispatches notifications a microtask late, so `onprogress` can miss the last one when
    // it arrives together with the result; the wire order is what the bridge is responsible for.
    const msgs = wire.slice(from);
    const progress = msgs.filter((m) => m.method === "notifications/progress");
    const token = progress[0]?.params.progressToken;
    const answer = msgs.findIndex((m) => m.id === token && !m.method);
    return {
      onprogress: seen,
      wire: progress.map((m) => m.params.progress),
      beforeResult: progress.filter((m) => msgs.indexOf(m) < answer).length,
      result: text(r),
    };
  });
  await step("sampling", async () => {
    const r = await client.callTool({ name: "trigger-sampling-request", arguments: { prompt: "ping", maxTokens: 8 } });
    return { requests: counts.sampling, result: text(r) };
  });
  await step("elicitation", async () => {
    const r = await client.callTool({ name: "trigger-elicitation-request", arguments: {} });
    return { requests: counts.elicitation, result: text(r) };
  });
  // Roots are requested by the server ~350 ms after initialization; informative only.
  summary.rootsRequests = counts.roots;
  delete summary.step;
  await client.close();
  return summary;
}

async function main() {
  const [bridge, url, ...extra] = process.argv.slice(2);
  if (!bridge || !url) {
    console.error("usage: node sdk_client.mjs <path-to-alibridge> <url> [extra alibridge args…]");
    process.exit(2);
  }
  const transport = new RecordingStdioTransport({
    command: bridge,
    args: [url, ...extra],
    env: { ...process.env }, // the SDK would otherwise pass only a minimal allow-list
    stderr: "inherit",
  });
  const summary = {};
  try {
    await runScenario(transport, summary);
    console.log(JSON.stringify({ ok: true, ...summary }));
  } catch (err) {
    console.log(JSON.stringify({ ok: false, ...summary, error: String(err?.stack ?? err) }));
    await transport.close().catch(() => {});
    process.exitCode = 1;
  }
}

// Run only when executed, not when imported (paths compared after resolving symlinks).
if (process.argv[1] && realpathSync(process.argv[1]) === fileURLToPath(import.meta.url)) {
  await main();
}
