//! End-to-end tests: each one spawns the real `alibridge` binary and speaks JSON-RPC to it over
//! stdio, against real MCP servers (rmcp in-process, and the official npm packages).

#[path = "../support/mod.rs"]
mod support;

/// `--auth ak` against a local fake of RAM-OAuth/STS and a token-checking server.
mod access_key;
/// `--auth ak`: a token's life in a session (renewal, revocation, STS renewal).
mod access_key_tokens;
/// The Alibaba fake verifies signatures, keys, timestamps and nonces like the real services.
mod aliyun_fake_checks;
/// Command-line surface: flags, validation errors, exit codes.
mod cli;
/// The URL-less start: the account's Core endpoint found with AccessKeys, identity switches.
mod core_endpoint;
/// `alibridge doctor` against the local fakes: green, down, bad credentials, skewed clock.
mod doctor;
/// Protocol eras (MCP 2026-07-28 and the initialize era): every cell of docs/protocol-eras.md
/// against the TypeScript SDK 2.x server and client, rmcp and server-everything.
mod eras;
/// Official npm peers: server-everything (streamableHttp, sse) and the TypeScript SDK client.
mod everything;
/// `--token-command` (a script that counts its runs) and `--bearer-token`.
mod external_token;
/// Fault matrix: upstream failures, session loss, cut streams, bad stdin, shutdown.
mod faults;
/// Fast first contact (issue 21): which connection each request uses, in order.
mod first_contact;
/// Hostile peers: redirects, legacy endpoint events and host names that would steer
/// credentials to another origin (a canary on 127.0.0.2 proves nothing arrives).
mod hostile;
/// Issue 21 over HTTPS + HTTP/2 (ALPN `h2`): every request, the GET stream too, on one connection.
mod http2;
/// The OAuth token store on a real keychain (gnome-keyring's Secret Service, `--ignored`
/// under `.ci/run`), and the 0600 file fallback without one.
mod keyring;
/// Peer input limits: --max-message-size both ways, --max-in-flight, GET-stream backoff, peak
/// memory with a 128 MiB line, hostile numbers, private log file.
mod limits;
/// `--auth oauth` against a local authorization server: sign-in, refresh, revocation, step-up.
mod oauth;
/// OAuth client identity (preregistered, forgotten registration); `login` / `status` / `logout`.
mod oauth_clients;
/// OAuth sign-ins and refreshes at once across bridges, the callback port, interrupted sign-ins.
mod oauth_concurrency;
/// OAuth renewals coordinated by token generation: races of calls, streams and processes.
mod oauth_race;
/// OAuth trust boundaries: `iss`, resource metadata, issuer-keyed sign-ins.
mod oauth_trust;
/// OpenTelemetry export (issue 23) to a real OTLP/HTTP receiver: spans, metrics, privacy.
mod observability;
/// More of issue 23's export: hashed session ids, reconnect and refresh counters, API actions.
mod observability_more;
/// Issue 20, tool pinning (`--pin-tools`) in the stdio bridge: first use, withheld changed and
/// new tools, approval through elicitation, the local policy first, every page, the switches.
mod pinning;
/// `--pin-tools`: trust on first use, held-back changes, `alibridge tools`.
mod pinning_basics;
/// Tool pinning on the command line (`alibridge tools`) and with bad input (corrupt pin file,
/// listings over the limits).
mod pinning_cli;
/// Tool pinning in `alibridge proxy` and with the TypeScript SDK client's elicitation.
mod pinning_peers;
/// Tool pinning in `alibridge proxy`: approval by elicitation (rmcp and the TypeScript SDK
/// client; accept, decline, the question's owner, a departing client) and clients that cannot
/// be asked.
mod pinning_proxy;
/// `alibridge pre-check` against the fake sign-in page: authorized, denied, not installed,
/// timeout; the verdict recorded for `doctor`.
mod pre_check;
/// `alibridge proxy`: access rules and the server list, Host/Origin guard, proxy token, caps,
/// AccessKey credentials (401 refresh, health).
mod proxy;
/// `alibridge proxy`: rmcp client and server-everything through the local HTTP proxy, SSE,
/// failures, concurrency, shutdown, command line.
mod proxy_sessions;
/// Happy paths against the rmcp test server.
mod relay;
/// Cloud-ops safety: tool policy, read-only, confirmation (TypeScript SDK client), default
/// region, audit log.
mod safety;
/// Issue 19's adversarial safety suite: 40+ attempts to get a write past `--read-only`, API
/// rules, `--confirm-writes` and the strict reader, through the stdio bridge and the proxy,
/// against a recording Core-edition upstream.
mod safety_adversarial;
/// The attempts of `safety_adversarial`, one table per flag set.
mod safety_adversarial_cases;
/// The bridge's audit log: every call recorded without secrets, rollover, failures.
mod safety_audit;
/// Cloud-ops safety: `--safety-policy` against the Alibaba fake; the policy flags.
mod safety_policy;
/// Cloud-ops safety: the tool policy in `alibridge proxy`.
mod safety_proxy;
/// `alibridge proxy` against its own clients: session-bound confirmations, their timeout and
/// cancellation, the session-id cap, the strict reader on every method.
mod safety_proxy_confirm;
/// The price quote (`--estimate-cost`) shown before a CLI write is confirmed.
mod safety_quote;
/// `add` / `remove` / `list` against fixture files of every client and scope.
mod setup;
/// Warm starts: the AccessKey token cache and the protocol-era cache (issue 14), counted.
mod warm_start;
