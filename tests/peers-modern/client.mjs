// A modern (dual-era) MCP client for alibridge's protocol-era tests: the official TypeScript
// SDK 2.x client with `versionNegotiation: { mode: 'auto' }`, spawning alibridge over stdio as a
// desktop client would. It probes with `server/discover` first and falls back to `initialize`
// when the answer is not a modern one.
//
//   node client.mjs <path-to-alibridge> <url> <echo-tool-arguments-json> [alibridge args…]
//
// Prints ONE JSON object on stdout: `{"ok":true, era, serverName, tools, echo, …}` or
// `{"ok":false,"step":…,"error":…}` (exit 1). Against the modern test server it also runs the
// elicitation round trip (the client fulfils `input_required` itself) and the `x-mcp-header`
// tool. The bridge's stderr is passed through.
import { Client } from '@modelcontextprotocol/client';
import { StdioClientTransport } from '@modelcontextprotocol/client/stdio';

const [bin, url, echoArgs, ...extra] = process.argv.slice(2);
const summary = { ok: false };
let step = 'connect';
const started = Date.now();

const client = new Client(
    { name: 'alibridge-modern-client', version: '2.4.0' },
    { capabilities: { elicitation: {} }, versionNegotiation: { mode: 'auto', probe: { timeoutMs: 10000 } } }
);
client.setRequestHandler('elicitation/create', async () => ({ action: 'accept', content: { name: 'Zoë' } }));

const transport = new StdioClientTransport({ command: bin, args: [url, ...extra], stderr: 'inherit' });
try {
    await client.connect(transport);
    summary.connectMs = Date.now() - started;
    summary.era = client.getProtocolEra();
    summary.serverName = client.getServerVersion()?.name;
    step = 'tools/list';
    const tools = await client.listTools();
    summary.tools = tools.tools.map((t) => t.name);
    step = 'echo';
    const echo = await client.callTool({ name: 'echo', arguments: JSON.parse(echoArgs) });
    summary.echo = echo.content?.[0]?.text;
    if (summary.tools.includes('ask_name')) {
        step = 'ask_name';
        const asked = await client.callTool({ name: 'ask_name', arguments: {} });
        summary.askName = asked.content?.[0]?.text;
        step = 'regional';
        const regional = await client.callTool({ name: 'regional', arguments: { region: 'cn-hangzhou 华东', query: 'select 1' } });
        summary.regional = regional.content?.[0]?.text;
    }
    summary.ok = true;
} catch (e) {
    summary.step = step;
    summary.error = String(e?.stack ?? e);
}
try {
    await client.close();
} catch {
    // already closed
}
process.stdout.write(JSON.stringify(summary) + '\n');
process.exit(summary.ok ? 0 : 1);
