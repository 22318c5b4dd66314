// A real MCP 2026-07-28 server for alibridge's protocol-era tests: the official TypeScript SDK
// 2.x (`createMcpHandler`), served on 127.0.0.1 behind a recording front.
//
//   node server.mjs --legacy stateless   dual-era: 2025 traffic is served statelessly too
//   node server.mjs --legacy reject      modern-only: 2025 traffic gets 400 / -32022
//
// Prints `PORT <n>` once listening (port 0: the kernel picks, nothing to race). The MCP
// endpoint is `/mcp`. The front records every HTTP request (`GET /_log`: method, the MCP
// headers, JSON-RPC method/id/tool, status) and counts tool executions (`GET /_counts`).
// `listen_acknowledged` counts subscriptions/listen streams the server has opened;
// `POST /_drop_listens` cuts every open one.
// `slow` counts `slow_aborted` when the client closes its response stream (cancellation).
// `POST /_break` with `{"method": m}` or `{"tool": t}` arms a fault: the next such POST is
// served (the tool runs) but its answer is cut off mid-body, as a broken network would.

import http from 'node:http';
import { McpServer, createMcpHandler, inputRequired, inputResponse } from '@modelcontextprotocol/server';
import * as z from 'zod/v4';

const legacy = process.argv.includes('reject') ? 'reject' : 'stateless';
const counts = {};
const log = [];
const breaks = [];
// Open subscriptions/listen responses, for `POST /_drop_listens` (a network cut).
const listens = new Set();
const ran = (name) => {
    counts[name] = (counts[name] ?? 0) + 1;
};

// The exact requestState the `ask_name` tool mints: non-ASCII and escapes, so an echo that is
// not byte for byte shows.
const STATE = 'état "1" \\ ✓';

let handler;
const factory = () => {
    const s = new McpServer(
        { name: 'modern-peer', version: '2.4.0' },
        {
            capabilities: { tools: { listChanged: true }, logging: {} },
            instructions: `Test server for alibridge (legacy: ${legacy}).`
        }
    );
    s.registerTool('echo', { description: 'Echoes text', inputSchema: z.object({ text: z.string() }) }, async ({ text }) => {
        ran('echo');
        return { content: [{ type: 'text', text }] };
    });
    s.registerTool(
        'idempotent_echo',
        {
            description: 'Echoes text; safe to repeat',
            inputSchema: z.object({ text: z.string() }),
            annotations: { idempotentHint: true }
        },
        async ({ text }) => {
            ran('idempotent_echo');
            return { content: [{ type: 'text', text }] };
        }
    );
    s.registerTool(
        'regional',
        {
            description: 'Needs its region mirrored into Mcp-Param-Region',
            inputSchema: z.object({ region: z.string().meta({ 'x-mcp-header': 'Region' }), query: z.string() })
        },
        async ({ region, query }) => {
            ran('regional');
            return { content: [{ type: 'text', text: `${region}: ${query}` }] };
        }
    );
    s.registerTool('progress', { description: 'Reports progress, then answers', inputSchema: z.object({ steps: z.number().int() }) }, async ({ steps }, ctx) => {
        ran('progress');
        const token = ctx.mcpReq._meta?.progressToken;
        for (let i = 1; i <= steps; i++) {
            if (token !== undefined) {
                await ctx.mcpReq.notify({ method: 'notifications/progress', params: { progressToken: token, progress: i, total: steps } });
            }
        }
        return { content: [{ type: 'text', text: `done after ${steps} steps` }] };
    });
    s.registerTool('ask_name', { description: 'Asks the user for a name (elicitation, MRTR)', inputSchema: z.object({}) }, async (_args, ctx) => {
        const answer = inputResponse(ctx.mcpReq.inputResponses, 'name');
        if (answer.kind === 'missing') {
            return inputRequired({
                inputRequests: {
                    name: inputRequired.elicit({
                        message: 'What is your name?',
                        requestedSchema: { type: 'object', properties: { name: { type: 'string' } }, required: ['name'] }
                    })
                },
                requestState: STATE
            });
        }
        const state = ctx.mcpReq.requestState();
        if (state !== STATE) {
            return { isError: true, content: [{ type: 'text', text: `requestState changed: ${JSON.stringify(state)}` }] };
        }
        ran('ask_name');
        if (answer.kind === 'elicit' && answer.action === 'accept') {
            return { content: [{ type: 'text', text: `Hello, ${answer.content?.name}!` }] };
        }
        return { content: [{ type: 'text', text: `no name (${answer.kind === 'elicit' ? answer.action : answer.kind})` }] };
    });
    s.registerTool('slow', { description: 'Waits until cancelled (or ms pass)', inputSchema: z.object({ ms: z.number().int() }) }, async ({ ms }, ctx) => {
        ran('slow_started');
        await new Promise((resolve) => {
            const timer = setTimeout(resolve, ms);
            ctx.mcpReq.signal.addEventListener('abort', () => {
                clearTimeout(timer);
                ran('slow_aborted');
                resolve();
            });
        });
        return { content: [{ type: 'text', text: 'slept' }] };
    });
    s.registerTool('change_tools', { description: 'Announces that the tool list changed', inputSchema: z.object({}) }, async () => {
        ran('change_tools');
        handler.notify.toolsChanged();
        return { content: [{ type: 'text', text: 'announced' }] };
    });
    return s;
};

handler = createMcpHandler(factory, { legacy });

const HEADERS = ['mcp-protocol-version', 'mcp-method', 'mcp-name', 'mcp-session-id', 'accept', 'last-event-id'];

function record(req, body) {
    const entry = { httpMethod: req.method, headers: {} };
    for (const [k, v] of Object.entries(req.headers)) {
        if (HEADERS.includes(k) || k.startsWith('mcp-param-')) entry.headers[k] = v;
    }
    try {
        const msg = JSON.parse(body.toString('utf8'));
        entry.rpcMethod = msg.method;
        entry.rpcId = msg.id;
        entry.tool = msg.method === 'tools/call' ? msg.params?.name : undefined;
        entry.meta = msg.params?._meta;
        entry.requestState = msg.params?.requestState;
        entry.hasInputResponses = msg.params?.inputResponses !== undefined;
    } catch {
        // not JSON: logged as is
    }
    log.push(entry);
    return entry;
}

function json(res, status, value) {
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(JSON.stringify(value));
}

const server = http.createServer(async (req, res) => {
    const chunks = [];
    for await (const c of req) chunks.push(c);
    const body = Buffer.concat(chunks);
    if (req.url === '/_log') return json(res, 200, log);
    if (req.url === '/_counts') return json(res, 200, counts);
    if (req.url === '/_drop_listens') {
        const n = listens.size;
        for (const r of listens) r.socket?.destroy();
        listens.clear();
        return json(res, 200, { dropped: n });
    }
    if (req.url === '/_break') {
        breaks.push(JSON.parse(body.toString('utf8')));
        return json(res, 200, { armed: breaks.length });
    }
    const entry = record(req, body);
    const headers = new Headers();
    for (const [k, v] of Object.entries(req.headers)) headers.set(k, Array.isArray(v) ? v.join(', ') : v);
    const abort = new AbortController();
    res.on('close', () => {
        if (!res.writableFinished) abort.abort();
    });
    const request = new Request(`http://${req.headers.host}${req.url}`, {
        method: req.method,
        headers,
        body: req.method === 'GET' || req.method === 'HEAD' ? undefined : body,
        signal: abort.signal
    });
    const fault = breaks.findIndex((b) => (b.method && b.method === entry.rpcMethod) || (b.tool && b.tool === entry.tool));
    let response;
    try {
        response = await handler.fetch(request);
    } catch (e) {
        entry.status = 500;
        return json(res, 500, { error: String(e) });
    }
    entry.status = response.status;
    if (fault >= 0) {
        breaks.splice(fault, 1);
        entry.broken = true;
        // The handler ran to its answer; the client gets a cut body and a dead connection.
        await response.text();
        res.writeHead(200, { 'content-type': 'application/json' });
        res.flushHeaders();
        // Cut once the partial body is on the wire, so the client sees a broken answer.
        res.write('{"jsonrpc":"2.0",', () => res.socket.destroy());
        return;
    }
    res.writeHead(response.status, Object.fromEntries(response.headers));
    if (entry.rpcMethod === 'subscriptions/listen') {
        listens.add(res);
        res.on('close', () => listens.delete(res));
    }
    if (response.body) {
        try {
            for await (const c of response.body) {
                if (entry.rpcMethod === 'subscriptions/listen' && Buffer.from(c).includes('notifications/subscriptions/acknowledged')) {
                    ran('listen_acknowledged');
                }
                res.write(c);
            }
        } catch {
            // the client went away (cancellation): nothing more to write
        }
    }
    res.end();
});

server.listen(0, '127.0.0.1', () => {
    process.stdout.write(`PORT ${server.address().port}\n`);
});
