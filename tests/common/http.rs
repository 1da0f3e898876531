//! A loopback HTTP/1.1 test server (std::net only) for webhooks and HTTP
//! functions (SPEC §4.4, §5.4).
//!
//! ```ignore
//! mod common;
//! use common::http::{Body, HttpServer, Reply};
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
//! * One thread per connection; keep-alive is honoured (HTTP/1.1 default),
//!   `Connection: close` closes after the reply; `Expect: 100-continue` is
//!   answered; request bodies may use `Content-Length` or chunked encoding.
//! * Dropping the server stops accepting; idle connection threads end at
//!   their 60 s read timeout.
#![allow(dead_code)]

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
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
        let routes = self.routes.lock().unwrap();
        routes
            .iter()
            .filter(|(p, _)| path.starts_with(p.as_str()))
            .max_by_key(|(p, _)| p.len())
            .map(|(_, r)| r.clone())
            .unwrap_or_else(|| Reply::status(200))
    }
}

/// The server; see the module docs.
pub struct HttpServer {
    addr: SocketAddr,
    state: Arc<State>,
    stop: Arc<AtomicBool>,
    accept: Option<thread::JoinHandle<()>>,
}

impl HttpServer {
    /// Listens on 127.0.0.1 on a free port and serves in background threads.
    pub fn start() -> HttpServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(State::default());
        let stop = Arc::new(AtomicBool::new(false));
        let (st, sp) = (state.clone(), stop.clone());
        let accept = thread::spawn(move || {
            for conn in listener.incoming() {
                if sp.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let st = st.clone();
                thread::spawn(move || {
                    let _ = serve(conn, &st);
                });
            }
        });
        HttpServer {
            addr,
            state,
            stop,
            accept: Some(accept),
        }
    }

    /// `http://127.0.0.1:PORT` (no trailing slash).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Sets the reply for paths starting with `prefix` (replacing an earlier
    /// one for the same prefix).
    pub fn route(&self, prefix: &str, reply: Reply) {
        let mut r = self.state.routes.lock().unwrap();
        r.retain(|(p, _)| p != prefix);
        r.push((prefix.to_string(), reply));
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<Request> {
        self.state.requests.lock().unwrap().clone()
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
        let reqs = self.state.requests.lock().unwrap();
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
    /// the server (`requests`, `json_bodies`… would deadlock).
    pub fn wait_until(&self, deadline: Duration, mut cond: impl FnMut(&[Request]) -> bool) -> bool {
        let end = Instant::now() + deadline;
        let mut reqs = self.state.requests.lock().unwrap();
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
                .unwrap()
                .0;
        }
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so that it sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(h) = self.accept.take() {
            let _ = h.join();
        }
    }
}

fn bad(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_string())
}

/// Reads one CRLF-terminated line (without the line end); None at EOF.
fn read_line(r: &mut impl BufRead) -> io::Result<Option<String>> {
    let mut buf = Vec::new();
    if r.read_until(b'\n', &mut buf)? == 0 {
        return Ok(None);
    }
    while matches!(buf.last(), Some(b'\n' | b'\r')) {
        buf.pop();
    }
    Ok(Some(String::from_utf8_lossy(&buf).into_owned()))
}

fn serve(conn: TcpStream, st: &State) -> io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(60)))?;
    conn.set_nodelay(true)?;
    let mut w = conn.try_clone()?;
    let mut r = BufReader::new(conn);
    loop {
        // Request line (skip stray empty lines between requests).
        let line = loop {
            match read_line(&mut r)? {
                None => return Ok(()),
                Some(l) if l.is_empty() => continue,
                Some(l) => break l,
            }
        };
        let mut parts = line.split(' ');
        let method = parts.next().unwrap_or("").to_string();
        let path = parts
            .next()
            .ok_or_else(|| bad("no request target"))?
            .to_string();
        let version = parts.next().unwrap_or("HTTP/1.0").to_string();
        let mut headers = Vec::new();
        loop {
            let Some(h) = read_line(&mut r)? else {
                return Ok(());
            };
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
            }
        }
        let get = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        };
        if get("expect").is_some_and(|v| v.eq_ignore_ascii_case("100-continue")) {
            w.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
            w.flush()?;
        }
        let chunked =
            get("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
        let mut body = Vec::new();
        if chunked {
            loop {
                let size_line = read_line(&mut r)?.ok_or_else(|| bad("eof in chunk size"))?;
                let hex = size_line.split(';').next().unwrap_or("").trim();
                let size = usize::from_str_radix(hex, 16).map_err(|_| bad("bad chunk size"))?;
                if size == 0 {
                    // Trailers up to the empty line.
                    while let Some(t) = read_line(&mut r)? {
                        if t.is_empty() {
                            break;
                        }
                    }
                    break;
                }
                let start = body.len();
                body.resize(start + size, 0);
                r.read_exact(&mut body[start..])?;
                let _ = read_line(&mut r)?; // CRLF after the chunk
            }
        } else if let Some(len) = get("content-length") {
            let len: usize = len.parse().map_err(|_| bad("bad content-length"))?;
            body.resize(len, 0);
            r.read_exact(&mut body)?;
        }
        let close = get("connection").is_some_and(|v| v.eq_ignore_ascii_case("close"))
            || (version == "HTTP/1.0"
                && !get("connection").is_some_and(|v| v.eq_ignore_ascii_case("keep-alive")));
        let req = Request {
            method,
            path,
            headers,
            body,
        };
        let reply = st.reply_for(&req.path);
        let out = reply.render(&req);
        let head_only = req.method == "HEAD";
        {
            let mut reqs = st.requests.lock().unwrap();
            reqs.push(req);
            st.arrived.notify_all();
        }
        if !reply.delay.is_zero() {
            thread::sleep(reply.delay);
        }
        let mut resp = format!(
            "HTTP/1.1 {} {}\r\nContent-Length: {}\r\nContent-Type: application/octet-stream\r\n",
            reply.status,
            reason(reply.status),
            out.len()
        )
        .into_bytes();
        if close {
            resp.extend_from_slice(b"Connection: close\r\n");
        }
        resp.extend_from_slice(b"\r\n");
        if !head_only {
            resp.extend_from_slice(&out);
        }
        w.write_all(&resp)?;
        w.flush()?;
        if close {
            return Ok(());
        }
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        400 => "Bad Request",
        404 => "Not Found",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Status",
    }
}
