//! A loopback HTTP/1.1 test server for webhooks and HTTP functions (SPEC
//! §4.4, §5.4): routes and a record of every request over `tiny_http`, which
//! does the protocol.
//!
//! ```ignore
//! use crate::common::http::{Body, HttpServer, Reply};
//! let srv = HttpServer::start();                       // 127.0.0.1:<free port>
//! srv.route("/convert", Reply::ok(Body::Prepend(b"converted:".to_vec())));
//! srv.route("/slow", Reply::ok(Body::Echo).delay(Duration::from_secs(2)));
//! srv.route("/broken", Reply::status(500));
//! let hook = format!("{}/hook", srv.url());            // a webhook URL
//! assert!(srv.wait_path("/hook", 3, Duration::from_secs(30)));
//! for v in srv.json_bodies("/hook") { /* serde_json::Value */ }
//! ```
//!
//! * Every request (method, path, headers, body) is recorded, in arrival
//!   order, before its reply is delayed or sent; waiters are woken at once.
//! * Replies are chosen per path prefix (the longest matching prefix wins);
//!   unrouted paths get `200` with an empty body.
//! * Each request is answered on a thread of its own, so that a delayed
//!   reply holds up no other request. `tiny_http` honours keep-alive (the
//!   HTTP/1.1 default) and `Connection: close`, answers
//!   `Expect: 100-continue`, and reads `Content-Length` and chunked bodies;
//!   replies always carry a `Content-Length`.
//! * Dropping the server stops serving and closes the listening socket.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

/// One recorded request.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    /// The request target as sent (path and query).
    pub path: String,
    /// Header names lower-cased, in the order received.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body parsed as JSON; panics (showing the body) if it is not JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "{} {}: body is not JSON ({e}): {:?}",
                self.method,
                self.path,
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

/// What the reply body is.
#[derive(Debug, Clone)]
pub enum Body {
    /// Always these bytes.
    Fixed(Vec<u8>),
    /// The request body.
    Echo,
    /// The request body with ASCII letters upper-cased.
    Upper,
    /// These bytes followed by the request body.
    Prepend(Vec<u8>),
}

/// How to answer requests under one path prefix.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub delay: Duration,
    pub body: Body,
}

impl Reply {
    /// `200` with the given body, no delay.
    pub fn ok(body: Body) -> Reply {
        Reply {
            status: 200,
            delay: Duration::ZERO,
            body,
        }
    }

    /// `status` with an empty body, no delay.
    pub fn status(status: u16) -> Reply {
        Reply {
            status,
            delay: Duration::ZERO,
            body: Body::Fixed(Vec::new()),
        }
    }

    /// The same reply, sent after `d`.
    pub fn delay(mut self, d: Duration) -> Reply {
        self.delay = d;
        self
    }

    fn render(&self, req: &Request) -> Vec<u8> {
        match &self.body {
            Body::Fixed(b) => b.clone(),
            Body::Echo => req.body.clone(),
            Body::Upper => req.body.to_ascii_uppercase(),
            Body::Prepend(p) => {
                let mut v = p.clone();
                v.extend_from_slice(&req.body);
                v
            }
        }
    }
}

#[derive(Default)]
struct State {
    requests: Mutex<Vec<Request>>,
    arrived: Condvar,
    routes: Mutex<Vec<(String, Reply)>>,
}

impl State {
    fn reply_for(&self, path: &str) -> Reply {
        let routes = lock(&self.routes);
        routes
            .iter()
            .filter(|(p, _)| path.starts_with(p.as_str()))
            .max_by_key(|(p, _)| p.len())
            .map(|(_, r)| r.clone())
            .unwrap_or_else(|| Reply::status(200))
    }

    fn record(&self, req: Request) {
        lock(&self.requests).push(req);
        self.arrived.notify_all();
    }
}

/// A test that panicked while holding a lock left the data usable.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The server; see the module docs.
pub struct HttpServer {
    addr: SocketAddr,
    state: Arc<State>,
    server: Arc<tiny_http::Server>,
    serve: Option<thread::JoinHandle<()>>,
}

impl HttpServer {
    /// Listens on 127.0.0.1 on a free port and serves in background threads.
    pub fn start() -> HttpServer {
        super::cpu::enter();
        let server = tiny_http::Server::http("127.0.0.1:0")
            .unwrap_or_else(|e| panic!("bind 127.0.0.1:0: {e}"));
        let addr = server
            .server_addr()
            .to_ip()
            .expect("a TCP listener has an IP address");
        let server = Arc::new(server);
        let state = Arc::new(State::default());
        let (srv, st) = (server.clone(), state.clone());
        let serve = thread::Builder::new()
            .name(format!("http-test-server-{}", addr.port()))
            .spawn(move || {
                // Ends when `Drop` unblocks it (or the listener fails).
                // Requests are read and recorded here, one after another, so
                // `requests()` lists them in the order they arrived (also on
                // one pipelined connection, on a busy machine); only the
                // reply (which may be delayed) gets a thread of its own.
                while let Ok(rq) = srv.recv() {
                    if let Some((rq, reply, out)) = receive(rq, &st) {
                        thread::spawn(move || answer(rq, &reply, out));
                    }
                }
            })
            .expect("spawn the HTTP test server thread");
        HttpServer {
            addr,
            state,
            server,
            serve: Some(serve),
        }
    }

    /// `http://127.0.0.1:PORT` (no trailing slash).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Sets the reply for paths starting with `prefix` (replacing an earlier
    /// one for the same prefix).
    pub fn route(&self, prefix: &str, reply: Reply) {
        let mut r = lock(&self.state.routes);
        r.retain(|(p, _)| p != prefix);
        r.push((prefix.to_string(), reply));
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<Request> {
        lock(&self.state.requests).clone()
    }

    /// Requests whose path starts with `prefix`.
    pub fn requests_to(&self, prefix: &str) -> Vec<Request> {
        self.requests()
            .into_iter()
            .filter(|r| r.path.starts_with(prefix))
            .collect()
    }

    /// How many requests had a path starting with `prefix`.
    pub fn count_path(&self, prefix: &str) -> usize {
        let reqs = lock(&self.state.requests);
        reqs.iter().filter(|r| r.path.starts_with(prefix)).count()
    }

    /// The JSON bodies of the requests under `prefix` (panics on a body that
    /// is not JSON: a webhook payload must be).
    pub fn json_bodies(&self, prefix: &str) -> Vec<Value> {
        self.requests_to(prefix).iter().map(Request::json).collect()
    }

    /// Waits until at least `n` requests (any path) arrived; false if
    /// `deadline` passed first.
    pub fn wait_for(&self, n: usize, deadline: Duration) -> bool {
        self.wait_until(deadline, |reqs| reqs.len() >= n)
    }

    /// Waits until at least `n` requests under `prefix` arrived.
    pub fn wait_path(&self, prefix: &str, n: usize, deadline: Duration) -> bool {
        self.wait_until(deadline, |reqs| {
            reqs.iter().filter(|r| r.path.starts_with(prefix)).count() >= n
        })
    }

    /// Waits until `cond` holds for the recorded requests (checked at every
    /// arrival); false if `deadline` passed first. `cond` runs under the
    /// server's lock: it must use the slice it is given, never call back into
    /// the server (`requests`, `json_bodies`… would deadlock). `deadline` is
    /// nominal, scaled like every harness deadline (`super::time_factor`).
    pub fn wait_until(&self, deadline: Duration, mut cond: impl FnMut(&[Request]) -> bool) -> bool {
        let end = Instant::now() + super::scaled(deadline);
        let mut reqs = lock(&self.state.requests);
        loop {
            if cond(&reqs) {
                return true;
            }
            let now = Instant::now();
            if now >= end {
                return false;
            }
            reqs = self
                .state
                .arrived
                .wait_timeout(reqs, (end - now).min(Duration::from_millis(200)))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(h) = self.serve.take() {
            let _ = h.join();
        }
        // The last `Arc` of the server goes here (answer threads hold only
        // requests), which closes the listening socket.
    }
}

/// Reads, records and answers one request (after the route's delay).
/// Reads one request, records it and works out its reply; None when its
/// body was cut short (answered 400 here; not a request tests should see).
fn receive(mut rq: tiny_http::Request, st: &State) -> Option<(tiny_http::Request, Reply, Vec<u8>)> {
    let mut body = Vec::new();
    if let Err(e) = rq.as_reader().read_to_end(&mut body) {
        let _ = rq.respond(
            tiny_http::Response::from_string(format!("bad body: {e}")).with_status_code(400),
        );
        return None;
    }
    let req = Request {
        method: rq.method().as_str().to_string(),
        path: rq.url().to_string(),
        headers: rq
            .headers()
            .iter()
            .map(|h| {
                (
                    h.field.as_str().as_str().to_ascii_lowercase(),
                    h.value.as_str().to_string(),
                )
            })
            .collect(),
        body,
    };
    let reply = st.reply_for(&req.path);
    let out = reply.render(&req);
    st.record(req);
    Some((rq, reply, out))
}

/// Sends the reply of one recorded request, after its delay.
fn answer(rq: tiny_http::Request, reply: &Reply, out: Vec<u8>) {
    if !reply.delay.is_zero() {
        thread::sleep(reply.delay);
    }
    let content_type =
        tiny_http::Header::from_bytes(&b"Content-Type"[..], &b"application/octet-stream"[..])
            .expect("a valid header");
    let resp = tiny_http::Response::from_data(out)
        .with_status_code(reply.status)
        .with_header(content_type)
        // Always `Content-Length`, never chunked, whatever the size.
        .with_chunked_threshold(usize::MAX);
    // The client may have given up (a webhook timeout): nothing to do then.
    let _ = rq.respond(resp);
}
