//! A small HTTP server on 127.0.0.1 for unit tests of the HTTP functions and
//! the URL webhooks, built on `tiny_http`: it records each request and
//! answers with scripted replies.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

#[derive(Clone)]
pub struct Reply {
    pub status: u16,
    /// None: echo the request body.
    pub body: Option<Vec<u8>>,
    /// Wait this long before answering.
    pub delay: Duration,
}

impl Reply {
    pub fn status(status: u16, body: &[u8]) -> Reply {
        Reply {
            status,
            body: Some(body.to_vec()),
            delay: Duration::ZERO,
        }
    }

    pub fn echo() -> Reply {
        Reply {
            status: 200,
            body: None,
            delay: Duration::ZERO,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

pub struct Server {
    pub url: String,
    server: Arc<tiny_http::Server>,
    requests: Arc<Mutex<Vec<Request>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    /// The i-th request gets `replies[i]`; later ones get the last reply.
    /// Requests are answered one at a time, in order of arrival.
    pub fn start(replies: Vec<Reply>) -> Server {
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").expect("bind test server"));
        let addr = server
            .server_addr()
            .to_ip()
            .expect("test server has an IP address");
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (srv, reqs, stp) = (server.clone(), requests.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            // `recv` returns an error once `unblock` is called on drop.
            for i in 0.. {
                let Ok(req) = srv.recv() else { return };
                if stp.load(Ordering::SeqCst) {
                    return;
                }
                let reply = replies
                    .get(i)
                    .or(replies.last())
                    .cloned()
                    .unwrap_or_else(Reply::echo);
                serve(req, &reply, &reqs, &stp);
            }
        });
        Server {
            url: format!("http://{addr}"),
            server,
            requests,
            stop,
            thread: Some(thread),
        }
    }

    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().map(|r| r.clone()).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(
    mut req: tiny_http::Request,
    reply: &Reply,
    reqs: &Mutex<Vec<Request>>,
    stop: &AtomicBool,
) {
    let mut body = Vec::new();
    if req.as_reader().read_to_end(&mut body).is_err() {
        return;
    }
    let seen = Request {
        method: req.method().as_str().to_string(),
        path: req.url().to_string(),
        headers: req
            .headers()
            .iter()
            .map(|h| (h.field.as_str().to_string(), h.value.as_str().to_string()))
            .collect(),
        body,
    };
    let answer = reply.body.clone().unwrap_or_else(|| seen.body.clone());
    if let Ok(mut r) = reqs.lock() {
        r.push(seen);
    }
    // Sleep in slices so that dropping the server does not wait out a delay.
    let until = Instant::now() + reply.delay;
    while Instant::now() < until && !stop.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(10));
    }
    let response = tiny_http::Response::from_data(answer).with_status_code(reply.status);
    // The client may have given up (timeout tests): nothing to do then.
    let _ = req.respond(response);
}
