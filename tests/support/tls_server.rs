//! An HTTPS MCP server that speaks HTTP/2 only (issue 21's "all requests share one
//! connection"): a certificate authority made at test time ([`TlsServer::ca_file`], for the
//! bridge's `SSL_CERT_FILE`), a `localhost` certificate it signed, ALPN offering `h2` alone, and
//! a minimal Streamable HTTP MCP server behind it (initialize with `Mcp-Session-Id`,
//! notifications and responses → 202, `tools/list`, `tools/call` of `echo`, a GET → an SSE
//! stream held open until the server stops).
//!
//! Every request is recorded with the TCP connection it arrived on ([`ConnId`], numbered in
//! accept order like [`super::net::serve`]'s), its HTTP version and how many GET streams were
//! open when it arrived, so a test can tell which requests shared a connection and whether they
//! were multiplexed beside the stream.

use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;

use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode, Version};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{json, Value};
use tokio::sync::Notify;
use tokio_rustls::rustls;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use super::home::TempHome;
use super::net::{listen, read_body, ConnId, LOOPBACK};

/// The session id the server hands out at `initialize`.
pub const SESSION_ID: &str = "h2-session-1";

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub conn: ConnId,
    pub version: Version,
    pub method: Method,
    /// The JSON-RPC method of a POST (None for responses, GETs, DELETEs).
    pub rpc_method: Option<String>,
    /// The `Mcp-Session-Id` the request carried.
    pub session: Option<String>,
    /// GET streams open (their bodies not yet dropped) when this request arrived.
    pub streams_open: usize,
}

/// What the connection tasks and the handler share.
#[derive(Default)]
struct State {
    seen: Mutex<Vec<Seen>>,
    changed: Notify,
    /// TCP connections accepted so far.
    accepted: AtomicU64,
    /// ALPN protocols the TLS handshakes settled on, one per connection that finished one.
    alpn: Mutex<Vec<Option<Vec<u8>>>>,
    streams_open: AtomicUsize,
}

/// The running server; stops (listener closed, connections dropped) when dropped.
pub struct TlsServer {
    port: u16,
    state: Arc<State>,
    kill: CancellationToken,
    ca_file: PathBuf,
    _dir: TempHome,
}

impl TlsServer {
    /// Starts the server on 127.0.0.1, port 0, with a fresh CA.
    pub async fn start() -> TlsServer {
        let dir = TempHome::new("tls-ca");
        let (ca_pem, config) = certificates();
        let ca_file = dir.write("ca.pem", &ca_pem);
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let listener = listen(LOOPBACK).await;
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(State::default());
        let kill = CancellationToken::new();
        let (st, k) = (state.clone(), kill.clone());
        tokio::spawn(async move {
            loop {
                let tcp = tokio::select! {
                    _ = k.cancelled() => return,
                    accepted = listener.accept() => match accepted {
                        Ok((tcp, _)) => tcp,
                        Err(_) => continue,
                    },
                };
                let conn = ConnId(st.accepted.fetch_add(1, Ordering::SeqCst) + 1);
                let (st, k, acceptor) = (st.clone(), k.clone(), acceptor.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        st.alpn.lock().unwrap().push(None);
                        return;
                    };
                    let alpn = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
                    st.alpn.lock().unwrap().push(alpn);
                    let st2 = st.clone();
                    let service = service_fn(move |req: Request<Incoming>| {
                        let st = st2.clone();
                        async move { Ok::<_, Infallible>(handle(&st, conn, req).await) }
                    });
                    let serving = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tls), service);
                    tokio::select! {
                        _ = serving => {}
                        _ = k.cancelled() => {}
                    }
                });
            }
        });
        TlsServer {
            port,
            state,
            kill,
            ca_file,
            _dir: dir,
        }
    }

    /// `https://localhost:PORT/mcp` (the name the certificate is for).
    pub fn url(&self) -> String {
        format!("https://localhost:{}/mcp", self.port)
    }

    /// The CA certificate (PEM) that signed the server's: what the client must trust.
    pub fn ca_file(&self) -> &std::path::Path {
        &self.ca_file
    }

    /// Every request so far, in arrival order.
    pub fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().unwrap().clone()
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.state.accepted.load(Ordering::SeqCst)
    }

    /// The ALPN protocol of each connection's TLS handshake (None: no handshake or no ALPN).
    pub fn alpn(&self) -> Vec<Option<Vec<u8>>> {
        self.state.alpn.lock().unwrap().clone()
    }

    /// Waits until a request matching `pred` has arrived; returns it.
    pub async fn wait_for(&self, what: &str, pred: impl Fn(&Seen) -> bool) -> Seen {
        super::wait::until_notified(&self.state.changed, what, || {
            self.state
                .seen
                .lock()
                .unwrap()
                .iter()
                .find(|s| pred(s))
                .cloned()
        })
        .await
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        self.kill.cancel();
    }
}

/// A CA (its PEM) and a server config with a `localhost` certificate it signed, offering `h2`
/// alone by ALPN.
fn certificates() -> (String, rustls::ServerConfig) {
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose,
        IsCa, KeyPair, KeyUsagePurpose,
    };
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "alibridge test CA");
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();

    let mut leaf = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    leaf.distinguished_name
        .push(DnType::CommonName, "localhost");
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = leaf.signed_by(&leaf_key, &ca).unwrap();

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![leaf.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into()),
        )
        .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec()];
    (ca.pem(), config)
}

type Body = BoxBody<Bytes, Infallible>;

/// Records the request, then answers it as a minimal Streamable HTTP MCP server.
async fn handle(state: &Arc<State>, conn: ConnId, req: Request<Incoming>) -> Response<Body> {
    let version = req.version();
    let (parts, body) = read_body(req).await;
    let msg: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let rpc_method = msg["method"].as_str().map(str::to_string);
    let session = parts
        .headers
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    state.seen.lock().unwrap().push(Seen {
        conn,
        version,
        method: parts.method.clone(),
        rpc_method: rpc_method.clone(),
        session,
        streams_open: state.streams_open.load(Ordering::SeqCst),
    });
    state.changed.notify_waiters();

    match parts.method {
        Method::GET => event_stream(state.clone()),
        Method::DELETE => status(StatusCode::OK),
        Method::POST => match (rpc_method.as_deref(), msg.get("id")) {
            // Notifications, and the client's answers to server requests.
            (_, None) | (None, _) => status(StatusCode::ACCEPTED),
            (Some(method), Some(id)) => answer(method, id, &msg["params"]),
        },
        _ => status(StatusCode::METHOD_NOT_ALLOWED),
    }
}

/// The JSON-RPC answer to a request.
fn answer(method: &str, id: &Value, params: &Value) -> Response<Body> {
    let outcome = match method {
        "initialize" => json!({"result": {
            "protocolVersion": params["protocolVersion"].as_str().unwrap_or("2025-06-18"),
            "capabilities": {"tools": {}},
            "serverInfo": {"name": "h2-test-server", "version": "0"}
        }}),
        "tools/list" => json!({"result": {"tools": [{
            "name": "echo",
            "description": "Echoes its text.",
            "inputSchema": {"type": "object", "properties": {"text": {"type": "string"}}}
        }]}}),
        "tools/call" => json!({"result": {"content": [{
            "type": "text",
            "text": params["arguments"]["text"].as_str().unwrap_or_default()
        }]}}),
        _ => json!({"error": {"code": -32601, "message": format!("no method {method}")}}),
    };
    let mut msg = json!({"jsonrpc": "2.0", "id": id});
    msg.as_object_mut()
        .unwrap()
        .extend(outcome.as_object().unwrap().clone());
    let mut resp = Response::builder().header("content-type", "application/json");
    if method == "initialize" {
        resp = resp.header("mcp-session-id", SESSION_ID);
    }
    resp.body(Full::new(Bytes::from(msg.to_string())).boxed())
        .unwrap()
}

/// An SSE stream that sends one comment and then stays open until its body is dropped (the
/// client closed it or the server stopped), counted in `streams_open` meanwhile.
fn event_stream(state: Arc<State>) -> Response<Body> {
    /// Decrements the open-stream count when the body goes.
    struct Open(Arc<State>);
    impl Drop for Open {
        fn drop(&mut self) {
            self.0.streams_open.fetch_sub(1, Ordering::SeqCst);
        }
    }
    state.streams_open.fetch_add(1, Ordering::SeqCst);
    let open = Open(state);
    let first = futures_util::stream::once(futures_util::future::ready(Ok::<_, Infallible>(
        Frame::data(Bytes::from_static(b": open\n\n")),
    )));
    let held = futures_util::stream::poll_fn(move |_| {
        let _held_open = &open;
        Poll::<Option<Result<Frame<Bytes>, Infallible>>>::Pending
    });
    Response::builder()
        .header("content-type", "text/event-stream")
        .body(BodyExt::boxed(StreamBody::new(first.chain(held))))
        .unwrap()
}

fn status(code: StatusCode) -> Response<Body> {
    Response::builder()
        .status(code)
        .body(Full::new(Bytes::new()).boxed())
        .unwrap()
}
