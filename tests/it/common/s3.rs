//! S3 test-server harness (TESTING.md layer 4/5): a real `moto_server` on
//! loopback, speaking S3 over HTTP.
//!
//! ```ignore
//! use crate::common::s3::S3Server;
//! let srv = S3Server::shared();            // one for the whole test binary
//! let bucket = srv.new_bucket("listing");  // a fresh bucket per test
//! let ep = srv.s3_endpoint(&bucket);       // a config::S3Endpoint for S3Client::connect
//! let json = srv.endpoint_config(&bucket); // or an `aws_s3` config entry
//! ```
//!
//! * The shared server starts on first use, on a free port, and is killed when
//!   the test binary exits: by an `atexit` handler, and by
//!   `PR_SET_PDEATHSIG`(SIGKILL) should the binary die without exiting
//!   (children are spawned from one long-lived thread, since the death signal
//!   follows the thread that forked).
//! * Fault tests take their own server, [`S3Server::spawn_private`], and
//!   [`stop`](S3Server::stop) / [`start`](S3Server::start) (a restart loses all
//!   buckets: moto keeps them in memory) or [`pause`](S3Server::pause) /
//!   [`resume`](S3Server::resume) it (SIGSTOP: a hung server). A private server
//!   is killed when dropped.
//! * Readiness is polled (TCP connect, then an HTTP answer), never slept for.
//! * `STORGATE_TEST_MOTO` names the server program (default `moto_server`,
//!   from `pip install 'moto[server]>=5.2.5'`: older 5.2.x answer
//!   CompleteMultipartUpload with a wrong XML root, getmoto/moto#10055, which
//!   the SDK rejects); `STORGATE_TEST_MOTO_LOG=DIR` keeps
//!   each server's log in `DIR/moto-PORT.log`.
//! * The test binary runs with
//!   `AWS_EC2_METADATA_DISABLED=true` (set before `main`, so before any
//!   thread), so neither the tests nor the daemons they start ever probe the
//!   EC2 metadata service.
#![allow(dead_code)]

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, Once, OnceLock, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use storgate::config::{S3Endpoint, Secret};

/// How long a starting server may take to answer (Python imports are slow
/// on a loaded 2-core machine).
pub const S3_READY_TIMEOUT: Duration = Duration::from_secs(60);
/// The request timeout of [`S3Server::s3_endpoint`].
pub const S3_TEST_TIMEOUT: Duration = Duration::from_secs(20);

extern "C" fn disable_imds() {
    // SAFETY: runs from .init_array, before main, while the process has a
    // single thread.
    unsafe { std::env::set_var("AWS_EC2_METADATA_DISABLED", "true") };
}

#[used]
#[unsafe(link_section = ".init_array")]
static DISABLE_IMDS: extern "C" fn() = disable_imds;

/// A moto server on `127.0.0.1:port`.
pub struct S3Server {
    /// `http://127.0.0.1:PORT`
    pub endpoint: String,
    pub port: u16,
    child: Mutex<Option<Child>>,
}

impl S3Server {
    /// The server shared by all tests of this binary (started on first use).
    pub fn shared() -> &'static S3Server {
        super::cpu::enter();
        static SHARED: OnceLock<S3Server> = OnceLock::new();
        SHARED.get_or_init(S3Server::spawn_private)
    }

    /// A server of its own, for tests that stop or pause it. Killed on drop.
    pub fn spawn_private() -> S3Server {
        super::cpu::enter();
        let mut last = String::new();
        for _ in 0..5 {
            let port = free_port();
            let srv = S3Server {
                endpoint: format!("http://127.0.0.1:{port}"),
                port,
                child: Mutex::new(None),
            };
            match srv.try_start() {
                Ok(()) => return srv,
                Err(e) => last = e,
            }
        }
        panic!("cannot start the S3 test server: {last}");
    }

    /// Starts the server again (on the same port) after [`stop`](Self::stop).
    /// It comes back empty.
    pub fn start(&self) {
        if let Err(e) = self.try_start() {
            panic!(
                "cannot restart the S3 test server on port {}: {e}",
                self.port
            );
        }
    }

    /// Kills the server (SIGKILL) and waits for it; a no-op when stopped.
    pub fn stop(&self) {
        let child = self.lock().take();
        if let Some(mut child) = child {
            unregister(child.id());
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Freezes the server (SIGSTOP): connections are accepted by the kernel
    /// but never answered, as with a hung backend.
    pub fn pause(&self) {
        self.signal(libc::SIGSTOP);
    }

    /// Undoes [`pause`](Self::pause).
    pub fn resume(&self) {
        self.signal(libc::SIGCONT);
    }

    pub fn is_running(&self) -> bool {
        self.lock().is_some()
    }

    /// Creates a bucket with a fresh name derived from `name_hint`.
    pub fn new_bucket(&self, name_hint: &str) -> String {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let mut hint: String = name_hint
            .chars()
            .map(|c| c.to_ascii_lowercase())
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        hint.truncate(30);
        let name = format!(
            "sg-{}-{}-{}",
            hint.trim_matches('-'),
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        )
        .replace("--", "-");
        self.create_bucket(&name);
        name
    }

    /// Creates the bucket `name` (e.g. again after a restart).
    pub fn create_bucket(&self, name: &str) {
        match http(self.port, "PUT", &format!("/{name}")) {
            Ok((200, _)) => {}
            Ok((status, body)) => panic!("creating bucket {name}: HTTP {status}: {body}"),
            Err(e) => panic!("creating bucket {name}: {e}"),
        }
    }

    /// An `aws_s3` config entry named after the bucket, pointing here.
    pub fn endpoint_config(&self, bucket: &str) -> Value {
        json!({
            "name": bucket,
            "bucket": bucket,
            "endpoint": self.endpoint,
            "forcePathStyle": true,
            "accessKeyId": "testing",
            "secretAccessKey": "testing",
            "region": "us-east-1",
        })
    }

    /// The same endpoint as the config model has it, for `S3Client::connect`
    /// (request timeout [`S3_TEST_TIMEOUT`]).
    pub fn s3_endpoint(&self, bucket: &str) -> S3Endpoint {
        S3Endpoint {
            name: bucket.to_string(),
            bucket: bucket.to_string(),
            region: Some("us-east-1".into()),
            endpoint: Some(self.endpoint.clone()),
            force_path_style: true,
            access_key_id: Some(Secret::new("testing")),
            secret_access_key: Some(Secret::new("testing")),
            profile: None,
            metadata_ttl: Duration::from_secs(1),
            timeout: S3_TEST_TIMEOUT,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Child>> {
        self.child.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn signal(&self, sig: libc::c_int) {
        if let Some(child) = self.lock().as_ref() {
            // SAFETY: plain kill(2) on our own child's pid.
            unsafe { libc::kill(child.id() as libc::pid_t, sig) };
        }
    }

    fn try_start(&self) -> Result<(), String> {
        let mut guard = self.lock();
        if guard.is_some() {
            return Ok(());
        }
        let mut child = spawn_moto(self.port)?;
        let deadline = Instant::now() + S3_READY_TIMEOUT;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                unregister(child.id());
                return Err(format!(
                    "moto_server exited with {status} (port {} taken? is moto installed: \
                     pip install 'moto[server]>=5.2.5'?)",
                    self.port
                ));
            }
            if let Ok((_, _)) = http(self.port, "GET", "/") {
                *guard = Some(child);
                return Ok(());
            }
            if Instant::now() > deadline {
                unregister(child.id());
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "no answer on port {} within {S3_READY_TIMEOUT:?}",
                    self.port
                ));
            }
            thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A port that was free a moment ago.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free port: {e}"))
}

type SpawnRequest = (u16, mpsc::Sender<Result<Child, String>>);

/// Spawns `moto_server` from the one long-lived spawner thread (so that
/// PDEATHSIG fires only when the whole test binary dies).
fn spawn_moto(port: u16) -> Result<Child, String> {
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<SpawnRequest>>> = OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnRequest>();
        thread::Builder::new()
            .name("moto-spawner".into())
            .spawn(move || {
                for (port, reply) in rx {
                    let _ = reply.send(spawn_moto_here(port));
                }
            })
            .unwrap_or_else(|e| panic!("cannot start the spawner thread: {e}"));
        Mutex::new(tx)
    });
    let (tx, rx) = mpsc::channel();
    spawner
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .send((port, tx))
        .map_err(|e| e.to_string())?;
    rx.recv().map_err(|e| e.to_string())?
}

fn spawn_moto_here(port: u16) -> Result<Child, String> {
    static ATEXIT: Once = Once::new();
    ATEXIT.call_once(|| {
        // SAFETY: registers a plain extern "C" fn.
        unsafe { libc::atexit(kill_all_at_exit) };
    });
    let program = std::env::var("STORGATE_TEST_MOTO").unwrap_or_else(|_| "moto_server".into());
    let (stdout, stderr) = match std::env::var_os("STORGATE_TEST_MOTO_LOG") {
        Some(dir) => {
            let path = std::path::Path::new(&dir).join(format!("moto-{port}.log"));
            let f = std::fs::File::create(&path)
                .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
            let g = f.try_clone().map_err(|e| e.to_string())?;
            (Stdio::from(f), Stdio::from(g))
        }
        None => (Stdio::null(), Stdio::null()),
    };
    // SAFETY: getpid before the fork; in the child only async-signal-safe
    // calls (prctl, getppid, _exit).
    let parent = unsafe { libc::getpid() };
    let mut cmd = Command::new(&program);
    cmd.args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .env("AWS_EC2_METADATA_DISABLED", "true");
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(io::Error::last_os_error());
            }
            if libc::getppid() != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
    let child = cmd.spawn().map_err(|e| {
        format!("cannot run {program:?} ({e}); install it with: pip install 'moto[server]>=5.2.5'")
    })?;
    register(child.id());
    Ok(child)
}

fn live() -> &'static Mutex<Vec<u32>> {
    static LIVE: OnceLock<Mutex<Vec<u32>>> = OnceLock::new();
    LIVE.get_or_init(|| Mutex::new(Vec::new()))
}

fn register(pid: u32) {
    live().lock().unwrap_or_else(|e| e.into_inner()).push(pid);
}

fn unregister(pid: u32) {
    live()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .retain(|p| *p != pid);
}

extern "C" fn kill_all_at_exit() {
    if let Ok(pids) = live().try_lock() {
        for pid in pids.iter() {
            // SAFETY: kill(2) of a child we spawned and have not reaped.
            unsafe { libc::kill(*pid as libc::pid_t, libc::SIGKILL) };
        }
    }
}

/// A minimal HTTP/1.1 request to the server: (status, body).
fn http(port: u16, method: &str, path: &str) -> io::Result<(u16, String)> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.set_write_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\n\
         Connection: close\r\n\r\n"
    )?;
    let mut resp = String::new();
    s.read_to_string(&mut resp)?;
    let status = resp
        .strip_prefix("HTTP/1.")
        .and_then(|r| r.get(2..5))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| io::Error::other(format!("not an HTTP answer: {resp:.100}")))?;
    let body = resp
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    Ok((status, body))
}

/// A loopback TCP relay in front of an S3 server that can be made to stop
/// answering, for timeout tests: [`forward`](Valve::forward) passes bytes
/// both ways; after [`silence`](Valve::silence) every connection, open or
/// new, is accepted and read from but never answered again (a hung backend
/// behind a live TCP stack); [`silence_after`](Valve::silence_after) lets
/// that many more response bytes through first, so a response stops in the
/// middle of its body. A silenced connection stays silent even if the valve
/// is opened again. Dropping the valve closes every socket.
pub struct Valve {
    /// `http://127.0.0.1:PORT` of the relay.
    pub endpoint: String,
    state: std::sync::Arc<ValveState>,
}

struct ValveState {
    /// Response bytes still allowed through; `u64::MAX` = forward freely.
    budget: AtomicU64,
    closed: std::sync::atomic::AtomicBool,
    /// Every socket of the relay, to shut down on drop.
    sockets: Mutex<Vec<TcpStream>>,
}

impl ValveState {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<TcpStream>> {
        self.sockets.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn keep(&self, s: &TcpStream) {
        if let Ok(c) = s.try_clone() {
            self.lock().push(c);
        }
    }

    /// How many of `n` response bytes may pass now (taken from the budget).
    fn take(&self, n: u64) -> u64 {
        let mut cur = self.budget.load(Ordering::SeqCst);
        loop {
            if cur == u64::MAX {
                return n;
            }
            let give = cur.min(n);
            match self
                .budget
                .compare_exchange(cur, cur - give, Ordering::SeqCst, Ordering::SeqCst)
            {
                Ok(_) => return give,
                Err(now) => cur = now,
            }
        }
    }
}

impl Valve {
    /// A relay to `upstream` (an `http://127.0.0.1:PORT` endpoint), forwarding.
    pub fn to(upstream: &str) -> Valve {
        let port: u16 = upstream
            .rsplit(':')
            .next()
            .and_then(|p| p.trim_end_matches('/').parse().ok())
            .unwrap_or_else(|| panic!("not an http://127.0.0.1:PORT endpoint: {upstream}"));
        let up = SocketAddr::from(([127, 0, 0, 1], port));
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the relay");
        let local = listener.local_addr().expect("relay address");
        let state = std::sync::Arc::new(ValveState {
            budget: AtomicU64::new(u64::MAX),
            closed: std::sync::atomic::AtomicBool::new(false),
            sockets: Mutex::new(Vec::new()),
        });
        let st = state.clone();
        thread::Builder::new()
            .name("valve-accept".into())
            .spawn(move || {
                for client in listener.incoming() {
                    if st.closed.load(Ordering::SeqCst) {
                        return;
                    }
                    let Ok(client) = client else { continue };
                    st.keep(&client);
                    let st = st.clone();
                    thread::spawn(move || relay(st, client, up));
                }
            })
            .expect("relay thread");
        Valve {
            endpoint: format!("http://{local}"),
            state,
        }
    }

    /// Forward freely again (new connections only: silenced ones stay dead).
    pub fn forward(&self) {
        self.state.budget.store(u64::MAX, Ordering::SeqCst);
    }

    /// From now on nothing more is answered.
    pub fn silence(&self) {
        self.silence_after(0);
    }

    /// `bytes` more response bytes pass, then nothing.
    pub fn silence_after(&self, bytes: u64) {
        self.state.budget.store(bytes, Ordering::SeqCst);
    }
}

impl Drop for Valve {
    fn drop(&mut self) {
        self.state.closed.store(true, Ordering::SeqCst);
        for s in self.state.lock().drain(..) {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
        // Wake the accept loop so it sees `closed`.
        if let Some(addr) = self.endpoint.strip_prefix("http://")
            && let Ok(addr) = addr.parse::<SocketAddr>()
        {
            let _ = TcpStream::connect_timeout(&addr, Duration::from_secs(1));
        }
    }
}

/// One client connection: requests go upstream (or are swallowed once the
/// valve is shut), answers come back while the budget lasts.
fn relay(st: std::sync::Arc<ValveState>, mut client: TcpStream, up: SocketAddr) {
    let swallow = |mut c: TcpStream| {
        let mut buf = [0u8; 64 * 1024];
        while let Ok(n) = c.read(&mut buf) {
            if n == 0 {
                break;
            }
        }
    };
    if st.budget.load(Ordering::SeqCst) == 0 {
        return swallow(client);
    }
    let Ok(mut server) = TcpStream::connect_timeout(&up, Duration::from_secs(5)) else {
        return swallow(client);
    };
    st.keep(&server);
    let (Ok(mut client_w), Ok(mut server_r)) = (client.try_clone(), server.try_clone()) else {
        return;
    };
    let back = st.clone();
    // Answers: upstream → client, within the budget; then silence.
    thread::spawn(move || {
        let mut buf = [0u8; 16 * 1024];
        let mut dead = false;
        while let Ok(n) = server_r.read(&mut buf) {
            if n == 0 {
                break;
            }
            if dead {
                continue;
            }
            let give = back.take(n as u64) as usize;
            if give > 0 && client_w.write_all(&buf[..give]).is_err() {
                break;
            }
            dead = give < n;
        }
        // A silenced relay does not even pass on the close.
        if !dead && back.budget.load(Ordering::SeqCst) != 0 {
            let _ = client_w.shutdown(std::net::Shutdown::Write);
        }
    });
    // Requests: client → upstream, swallowed once the valve is shut.
    let mut buf = [0u8; 64 * 1024];
    while let Ok(n) = client.read(&mut buf) {
        if n == 0 {
            let _ = server.shutdown(std::net::Shutdown::Write);
            break;
        }
        if st.budget.load(Ordering::SeqCst) == 0 {
            continue;
        }
        if server.write_all(&buf[..n]).is_err() {
            break;
        }
    }
}

/// The tokio runtime tests use to look into (and fill) buckets directly,
/// bypassing the mount.
pub fn rt() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("test runtime")
    })
}

/// A client of `bucket` on `srv` (straight to the server, bypassing the
/// mount and any valve).
pub fn client(
    srv: &S3Server,
    bucket: &str,
) -> std::sync::Arc<storgate::origin::s3::client::S3Client> {
    std::sync::Arc::new(
        rt().block_on(storgate::origin::s3::client::S3Client::connect(
            &srv.s3_endpoint(bucket),
        ))
        .expect("S3 client"),
    )
}
