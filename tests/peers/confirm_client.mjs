// The official TypeScript SDK client answering alibridge's `--confirm-writes` questions, used by
// tests/e2e/safety.rs:
//
//   node confirm_client.mjs <path-to-alibridge> <url> [alibridge args…]
//
// Against the ops test server behind alibridge, it runs one read and four writes, answering the
// bridge's `elicitation/create` with accept (confirm ticked), decline, cancel, and accept with
// the box unticked; then a second client WITHOUT the elicitation capability tries a write.
// Prints ONE JSON object: `{"ok":true, asked:[…], results:{…}, noCapability:"…"}` (or
// `{"ok":false,…,"error":…}` and exit 1). The bridges' stderr passes through.
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { ElicitRequestSchema } from "@modelcontextprotocol/sdk/types.js";

const [bridge, ...bridgeArgs] = process.argv.slice(2);
const summary = { asked: [], results: {} };

const transport = () =>
  new StdioClientTransport({
    command: bridge,
    args: bridgeArgs,
    env: { ...process.env },
    stderr: "inherit",
  });
const text = (r) => r.content?.find((c) => c.type === "text")?.text ?? null;

async function main() {
  const answers = [];
  const client = new Client(
    { name: "alibridge-confirm-client", version: "0.0.0" },
    { capabilities: { elicitation: {} } },
  );
  client.setRequestHandler(ElicitRequestSchema, async (req, extra) => {
    summary.asked.push({
      id: extra.requestId,
      message: req.params.message,
      schema: req.params.requestedSchema,
    });
    return answers.shift() ?? { action: "cancel" };
  });
  summary.step = "connect";
  await client.connect(transport());
  summary.step = "list";
  await client.listTools();

  summary.step = "read";
  const read = await client.callTool({ name: "DescribeRegions", arguments: {} });
  summary.results.read = { isError: !!read.isError, text: text(read) };

  for (const [name, answer] of [
    ["accept", { action: "accept", content: { confirm: true } }],
    ["decline", { action: "decline" }],
    ["cancel", { action: "cancel" }],
    ["unticked", { action: "accept", content: { confirm: false } }],
  ]) {
    summary.step = name;
    answers.push(answer);
    const r = await client.callTool({
      name: "DeleteInstance",
      arguments: { InstanceId: `i-${name}`, Password: "hunter2" },
    });
    summary.results[name] = { isError: !!r.isError, text: text(r) };
  }
  summary.step = "read again";
  await client.callTool({ name: "DescribeRegions", arguments: {} });
  await client.close();

  summary.step = "no capability";
  const plain = new Client({ name: "alibridge-plain-client", version: "0.0.0" }, { capabilities: {} });
  await plain.connect(transport());
  await plain.listTools();
  try {
    const r = await plain.callTool({ name: "DeleteInstance", arguments: { InstanceId: "i-plain" } });
    summary.noCapability = null;
    summary.unexpected = r;
  } catch (err) {
    summary.noCapability = String(err?.message ?? err);
  }
  await plain.close();
  delete summary.step;
}

try {
  await main();
  console.log(JSON.stringify({ ok: true, ...summary }));
} catch (err) {
  console.log(JSON.stringify({ ok: false, ...summary, error: String(err?.stack ?? err) }));
  process.exitCode = 1;
}
