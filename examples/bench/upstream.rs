//! The bench's upstream: a minimal Streamable HTTP MCP server on plain tokio (hand-written
//! HTTP/1.1, keep-alive, Content-Length bodies), and the HTTP/1.1 reading the direct client
//! shares with it. See the crate comment of `bench.rs` for what it answers.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use serde_json::{json, Value};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::io::{BufReader, BufWriter};
use tokio::net::{TcpListener, TcpStream};

use super::{runtime, Res, MIB};

// ---------------------------------------------------------------------------------------------
// The upstream: a minimal Streamable HTTP MCP server.

/// Starts the upstream on a free loopback port, on its own thread with its own runtime, so
/// every contender (the direct client included) reaches it across threads.
pub(super) fn start_upstream(max_big: usize) -> Res<SocketAddr> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let filler: Arc<[u8]> = vec![b'x'; max_big].into();
    let sessions = Arc::new(AtomicU64::new(1));
    let rt = runtime()?;
    std::thread::spawn(move || {
        rt.block_on(async move {
            let listener = TcpListener::from_std(listener).expect("a tokio listener");
            while let Ok((stream, _)) = listener.accept().await {
                let _ = stream.set_nodelay(true);
                let (filler, sessions) = (filler.clone(), sessions.clone());
                tokio::spawn(async move { serve(stream, &filler, &sessions).await.ok() });
            }
        })
    });
    Ok(addr)
}

/// `bench --upstream`: the upstream alone, for profilers (`bench/flame.py`). Prints its
/// address as the first stdout line and serves until stdin closes.
pub(super) fn serve_until_eof() -> Res<()> {
    let addr = start_upstream(16 * MIB)?;
    println!("{addr}");
    std::io::copy(&mut std::io::stdin(), &mut std::io::sink())?;
    Ok(())
}

/// Serves one keep-alive connection.
async fn serve(stream: TcpStream, filler: &[u8], sessions: &AtomicU64) -> Res<()> {
    let (r, w) = stream.into_split();
    let (mut r, mut w) = (BufReader::with_capacity(64 * 1024, r), BufWriter::new(w));
    while let Some(head) = read_head(&mut r).await? {
        let body = read_body(&mut r, &head).await?;
        match head.start.split(' ').next() {
            Some("POST") => handle_post(&mut w, &body, filler, sessions).await?,
            Some("DELETE") => respond(&mut w, "200 OK", "", &[]).await?,
            _ => respond(&mut w, "405 Method Not Allowed", "", &[]).await?,
        }
        w.flush().await?;
        if head.get("connection") == Some("close") {
            break;
        }
    }
    Ok(())
}

async fn handle_post<W>(w: &mut W, body: &[u8], filler: &[u8], sessions: &AtomicU64) -> Res<()>
where
    W: AsyncWrite + Unpin,
{
    let Ok(msg) = serde_json::from_slice::<Value>(body) else {
        return respond(w, "400 Bad Request", "", &[]).await;
    };
    let (Some(id), Some(method)) = (msg.get("id"), msg["method"].as_str()) else {
        return respond(w, "202 Accepted", "", &[]).await; // a notification or a response
    };
    let (params, mut headers) = (&msg["params"], String::new());
    let result = match (method, params["name"].as_str()) {
        ("initialize", _) => {
            let n = sessions.fetch_add(1, Relaxed);
            headers = format!("Mcp-Session-Id: bench-{n}\r\n");
            json!({"protocolVersion": params["protocolVersion"], "capabilities": {"tools": {}},
                   "serverInfo": {"name": "bench-upstream", "version": "0"}})
        }
        ("tools/call", Some("echo")) => {
            json!({"content": [{"type": "text", "text": params["arguments"]["text"]}]})
        }
        ("tools/call", Some("big")) => {
            // Sent from one shared buffer: the payload is never built or copied per call.
            let n = params["arguments"]["bytes"].as_u64().unwrap_or(0) as usize;
            let text = &filler[..n.min(filler.len())];
            let pre = format!(r#"{{"jsonrpc":"2.0","id":{id},"result":{{"content":[{{"#);
            let pre = format!(r#"{pre}"type":"text","text":""#);
            let parts = [pre.as_bytes(), text, br#""}]}}"#];
            return respond(w, "200 OK", "", &parts).await;
        }
        _ => {
            let error = json!({"code": -32601, "message": "method not found"});
            let reply = json!({"jsonrpc": "2.0", "id": id, "error": error});
            return respond(w, "200 OK", "", &[&serde_json::to_vec(&reply)?]).await;
        }
    };
    let reply = json!({"jsonrpc": "2.0", "id": id, "result": result});
    respond(w, "200 OK", &headers, &[&serde_json::to_vec(&reply)?]).await
}

/// Writes one response, its body in `parts`; `headers` are extra lines, each ending in CRLF.
async fn respond<W>(w: &mut W, status: &str, headers: &str, parts: &[&[u8]]) -> Res<()>
where
    W: AsyncWrite + Unpin,
{
    let len: usize = parts.iter().map(|p| p.len()).sum();
    let ctype = ["", "Content-Type: application/json\r\n"][(len > 0) as usize];
    let head = format!("HTTP/1.1 {status}\r\n{ctype}{headers}Content-Length: {len}\r\n\r\n");
    w.write_all(head.as_bytes()).await?;
    for part in parts {
        w.write_all(part).await?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// HTTP/1.1 message parsing, shared by the upstream and the direct client.

/// A request or status line, and the headers (names lower-cased).
pub(super) struct Head {
    pub(super) start: String,
    headers: Vec<(String, String)>,
}

impl Head {
    pub(super) fn get(&self, name: &str) -> Option<&str> {
        let found = self.headers.iter().find(|(n, _)| n == name);
        found.map(|(_, v)| v.as_str())
    }
}

/// Reads a message head; `None` at a clean end of the connection.
pub(super) async fn read_head<R: AsyncBufRead + Unpin>(r: &mut R) -> Res<Option<Head>> {
    let mut line = String::new();
    if r.read_line(&mut line).await? == 0 {
        return Ok(None);
    }
    let start = line.trim_end().to_string();
    let mut headers = Vec::new();
    loop {
        line.clear();
        if r.read_line(&mut line).await? == 0 {
            return Err("connection closed inside a message head".into());
        }
        let Some((name, value)) = line.trim_end().split_once(':') else {
            return Ok(Some(Head { start, headers })); // the empty line
        };
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
    }
}

/// Reads a Content-Length body (every client here sends one; chunked bodies are refused).
pub(super) async fn read_body<R: AsyncBufRead + Unpin>(r: &mut R, head: &Head) -> Res<Vec<u8>> {
    if head.get("transfer-encoding").is_some() {
        return Err("the bench only reads Content-Length bodies".into());
    }
    let len: usize = head.get("content-length").unwrap_or("0").parse()?;
    let mut body = vec![0; len];
    r.read_exact(&mut body).await?;
    Ok(body)
}

// ---------------------------------------------------------------------------------------------
// Setup and report.
