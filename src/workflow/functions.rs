//! Task functions (SPEC §5.4): running an `exec` program or POSTing to an
//! HTTP function, from a source file to an output file.
//!
//! This module also owns the supervision of short-lived child processes
//! ([`run_child`]), which exec webhooks (`events::webhook`) share: each child
//! runs in its own process group so that a timeout, or a program that leaves
//! background jobs behind, can be cleaned up with one `SIGKILL` to the group;
//! the child is always reaped, and no helper thread is used (stdin bytes and
//! stderr are pumped with `poll(2)` from the calling thread).

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, ChildStderr, ChildStdin, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How much of a failing program's stderr is kept for the error message.
const STDERR_TAIL: usize = 2048;
/// How much of a non-2xx HTTP response body is kept for the error message.
const HTTP_ERROR_BODY: u64 = 512;
/// Poll interval used only when the kernel has no `pidfd_open` (before 5.3),
/// so that the exit of a child is noticed without a wake-up fd.
const POLL_SLICE: Duration = Duration::from_millis(20);
/// After the child has exited and its group is killed, how long we still wait
/// for stderr to reach EOF; only a process that left the group (`setsid`) can
/// hold it open longer, and we don't wait for that one.
const STDERR_GRACE: Duration = Duration::from_millis(500);

/// Runs argv (argv[0] resolved via PATH when it has no '/'; no shell) with the
/// file `input` streamed to stdin and stdout written to the file `output`
/// (created/truncated).
///
/// A non-zero exit or death by signal is an error naming the program, the
/// status and the tail (≤ 2 KiB) of stderr; it is also logged as a warning.
/// On `timeout` the process group is killed with `SIGKILL` and reaped. A
/// program that does not read its stdin is not an error by itself.
pub fn run_exec(
    argv: &[String],
    input: &Path,
    output: &Path,
    timeout: Duration,
) -> Result<(), String> {
    let Some(program) = argv.first() else {
        return Err("exec function: empty argument list".to_string());
    };
    let stdin = File::open(input)
        .map_err(|e| format!("exec `{program}`: cannot open {}: {e}", input.display()))?;
    let stdout = File::create(output)
        .map_err(|e| format!("exec `{program}`: cannot create {}: {e}", output.display()))?;
    let spec = ChildSpec {
        program: Path::new(program),
        args: &argv[1..],
        env: &[],
        stdin: ChildInput::File(stdin),
        stdout: ChildOutput::File(stdout),
    };
    run_child(spec, timeout).inspect_err(|e| tracing::warn!(error = %e, "exec function failed"))
}

/// POSTs the bytes of `input` (`Content-Type: application/octet-stream`) to
/// `url`; a 2xx response body is streamed into `output`.
///
/// Non-2xx is an error with the status and the first 512 bytes of the body;
/// so are connection errors. The whole exchange, body included, is bounded by
/// `timeout`. `output` is only created once a 2xx status has arrived.
pub fn run_http(url: &str, input: &Path, output: &Path, timeout: Duration) -> Result<(), String> {
    let body = File::open(input)
        .map_err(|e| format!("POST {url}: cannot open {}: {e}", input.display()))?;
    let response = http_agent(timeout)
        .post(url)
        .header("Content-Type", "application/octet-stream")
        .send(&body)
        .map_err(|e| format!("POST {url}: {e}"))?;
    let status = response.status();
    let mut reader = response.into_body().into_reader();
    if !status.is_success() {
        return Err(format!(
            "POST {url}: HTTP {status}{}",
            body_excerpt(&mut reader)
        ));
    }
    let mut out = File::create(output)
        .map_err(|e| format!("POST {url}: cannot create {}: {e}", output.display()))?;
    io::copy(&mut reader, &mut out)
        .map_err(|e| format!("POST {url}: reading the response: {e}"))?;
    Ok(())
}

/// An agent whose every request, body included, is bounded by `timeout`, and
/// that hands back non-2xx responses (their bodies carry the useful error).
/// Redirects are not followed: a streamed POST body cannot be sent twice, and
/// the spec treats anything but 2xx as a failure.
pub(crate) fn http_agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .max_redirects(0)
        .build()
        .new_agent()
}

/// `": <first 512 bytes>"` of an error response body, or `""` when empty or
/// unreadable (the status alone is then the message).
pub(crate) fn body_excerpt(reader: &mut impl Read) -> String {
    let mut buf = Vec::new();
    // A broken body must not hide the status, so a read error just ends it.
    let _ = reader.take(HTTP_ERROR_BODY).read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf);
    let text = text.trim();
    if text.is_empty() {
        String::new()
    } else {
        format!(": {text}")
    }
}

/// Where a child's stdin comes from.
pub(crate) enum ChildInput<'a> {
    /// Handed to the child as its stdin directly (no copying by us).
    File(File),
    /// Written through a pipe; the child may stop reading at any point.
    Bytes(&'a [u8]),
}

/// Where a child's stdout goes.
pub(crate) enum ChildOutput {
    File(File),
    Discard,
}

/// One program to run: no shell, `program` looked up in PATH when it has no
/// `/`, extra environment on top of ours.
pub(crate) struct ChildSpec<'a> {
    pub program: &'a Path,
    pub args: &'a [String],
    pub env: &'a [(&'a str, &'a str)],
    pub stdin: ChildInput<'a>,
    pub stdout: ChildOutput,
}

/// Runs `spec` to completion or until `timeout`, in its own process group.
///
/// Ok only for exit status 0. The error names the program and says what
/// happened (could not start, exit status, signal, timeout), followed by the
/// tail of its stderr. Whatever happens, the group is killed and the child
/// reaped before this returns.
pub(crate) fn run_child(spec: ChildSpec, timeout: Duration) -> Result<(), String> {
    let name = spec.program.display().to_string();
    // A timeout too large to add to "now" is as good as none.
    let deadline = Instant::now().checked_add(timeout);
    let mut stdin_bytes: &[u8] = &[];
    let child = {
        let mut cmd = Command::new(spec.program);
        cmd.args(spec.args)
            .envs(spec.env.iter().copied())
            .process_group(0)
            .stderr(Stdio::piped());
        match spec.stdin {
            ChildInput::File(f) => cmd.stdin(Stdio::from(f)),
            ChildInput::Bytes(b) => {
                stdin_bytes = b;
                cmd.stdin(Stdio::piped())
            }
        };
        match spec.stdout {
            ChildOutput::File(f) => cmd.stdout(Stdio::from(f)),
            ChildOutput::Discard => cmd.stdout(Stdio::null()),
        };
        spawn(&mut cmd).map_err(|e| format!("cannot start `{name}`: {e}"))?
        // `cmd` is dropped here, closing our copies of the stdin/stdout files.
    };
    let mut group = Group::new(child)?;
    let mut stderr = group.child.stderr.take();
    let mut stdin = group.child.stdin.take();
    if stdin_bytes.is_empty() {
        stdin = None;
    }
    for fd in [
        stderr.as_ref().map(AsRawFd::as_raw_fd),
        stdin.as_ref().map(AsRawFd::as_raw_fd),
    ]
    .into_iter()
    .flatten()
    {
        set_nonblocking(fd).map_err(|e| format!("`{name}`: {e}"))?;
    }
    let pidfd = pidfd_open(group.pid);
    let mut tail = Tail::default();

    let timed_out = loop {
        match leader_exited(group.pid) {
            Ok(true) => break false,
            Ok(false) => {}
            Err(e) => return Err(format!("`{name}`: waiting for it: {e}")),
        }
        let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        if left == Some(Duration::ZERO) {
            break true;
        }
        let wait = match (&pidfd, left) {
            (Some(_), left) => left,
            (None, Some(left)) => Some(left.min(POLL_SLICE)),
            (None, None) => Some(POLL_SLICE),
        };
        let mut fds = Vec::with_capacity(3);
        let err_ix = stderr
            .as_ref()
            .map(|s| push_poll(&mut fds, s.as_raw_fd(), libc::POLLIN));
        let in_ix = stdin
            .as_ref()
            .map(|s| push_poll(&mut fds, s.as_raw_fd(), libc::POLLOUT));
        if let Some(p) = &pidfd {
            push_poll(&mut fds, p.as_raw_fd(), libc::POLLIN);
        }
        if let Err(e) = poll(&mut fds, wait) {
            return Err(format!("`{name}`: poll: {e}"));
        }
        if err_ix.is_some_and(|i| fds[i].revents != 0) && !pump_stderr(&mut stderr, &mut tail) {
            stderr = None;
        }
        if in_ix.is_some_and(|i| fds[i].revents != 0) && !pump_stdin(&mut stdin, &mut stdin_bytes) {
            stdin = None;
        }
    };

    // Kill the whole group now: on timeout that is the point; after a normal
    // exit it removes background jobs the program left, which would
    // otherwise outlive the task (and keep stderr open).
    group.kill();
    drop(stdin);
    let status = group
        .reap()
        .map_err(|e| format!("`{name}`: waiting for it: {e}"))?;
    drain_stderr(stderr, &mut tail);

    if timed_out {
        return Err(format!(
            "`{name}` timed out after {} s{}",
            timeout.as_secs_f64(),
            tail.render()
        ));
    }
    if status.success() {
        Ok(())
    } else {
        Err(format!("`{name}` failed ({status}){}", tail.render()))
    }
}

/// Spawns, retrying briefly on `ETXTBSY`: an executable that was just written
/// (a hook script being replaced) can still be open for writing in a process
/// forked by another thread at that moment; it clears within milliseconds.
fn spawn(cmd: &mut Command) -> io::Result<Child> {
    let mut delay = Duration::from_millis(10);
    for _ in 0..5 {
        match cmd.spawn() {
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) => {
                std::thread::sleep(delay);
                delay *= 2;
            }
            r => return r,
        }
    }
    cmd.spawn()
}

/// A spawned child leading its own process group. Dropping it unreaped kills
/// the group and reaps the child, so no early return leaves a zombie or a
/// running process behind.
struct Group {
    child: Child,
    pid: libc::pid_t,
    reaped: bool,
}

impl Group {
    fn new(mut child: Child) -> Result<Group, String> {
        match libc::pid_t::try_from(child.id()) {
            Ok(pid) => Ok(Group {
                child,
                pid,
                reaped: false,
            }),
            Err(_) => {
                // Cannot happen on Linux (pids fit in pid_t); without a valid
                // pid we can only kill the leader itself.
                let _ = child.kill();
                let _ = child.wait();
                Err(format!("child pid {} out of range", child.id()))
            }
        }
    }

    fn kill(&self) {
        // SAFETY: killpg takes plain integers. The group id is our child's pid,
        // which stays reserved while the child is unreaped (`reap` comes after
        // every `kill`), so it cannot name someone else's group. ESRCH (group
        // already gone) is fine.
        unsafe {
            libc::killpg(self.pid, libc::SIGKILL);
        }
    }

    fn reap(&mut self) -> io::Result<ExitStatus> {
        let status = self.child.wait();
        self.reaped = true;
        status
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        if !self.reaped {
            self.kill();
            let _ = self.child.wait();
        }
    }
}

/// Whether the child has exited, without reaping it (`WNOWAIT`), so that its
/// pid, and thus its process group id, stays reserved until we kill the group.
fn leader_exited(pid: libc::pid_t) -> io::Result<bool> {
    let Ok(id) = libc::id_t::try_from(pid) else {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    };
    loop {
        // SAFETY: siginfo_t is plain data; all-zero is a valid value and the
        // documented way to tell "no child ready" (si_pid stays 0) apart.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: `info` is a valid, writable siginfo_t for the call.
        let r = unsafe {
            libc::waitid(
                libc::P_PID,
                id,
                &mut info,
                libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
            )
        };
        if r == 0 {
            // SAFETY: waitid filled `info` (or left it zeroed); reading si_pid
            // of a SIGCHLD siginfo is what the accessor is for.
            return Ok(unsafe { info.si_pid() } != 0);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// A pidfd for `pid` (readable once it exits), or None on kernels without
/// `pidfd_open`; the caller then polls in short slices instead.
fn pidfd_open(pid: libc::pid_t) -> Option<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let r = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    let fd = RawFd::try_from(r).ok().filter(|fd| *fd >= 0)?;
    // SAFETY: the kernel just returned this fd to us and nothing else owns it.
    Some(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn set_nonblocking(fd: RawFd) -> io::Result<()> {
    // SAFETY: fcntl on an fd we own, with integer arguments only.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: as above.
    if unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn push_poll(fds: &mut Vec<libc::pollfd>, fd: RawFd, events: libc::c_short) -> usize {
    fds.push(libc::pollfd {
        fd,
        events,
        revents: 0,
    });
    fds.len() - 1
}

/// `poll(2)` for at most `wait` (None = no limit); EINTR counts as a wake-up.
fn poll(fds: &mut [libc::pollfd], wait: Option<Duration>) -> io::Result<()> {
    let ms = match wait {
        None => -1,
        // Round up so that we never wake just before the deadline and spin.
        Some(w) => i32::try_from(w.as_micros().div_ceil(1000)).unwrap_or(i32::MAX),
    };
    let Ok(n) = libc::nfds_t::try_from(fds.len()) else {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    };
    // SAFETY: `fds` is a valid slice of pollfd of length `n`.
    let r = unsafe { libc::poll(fds.as_mut_ptr(), n, ms) };
    if r < 0 {
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
    Ok(())
}

/// Reads what stderr has now into `tail`; false once it is closed (EOF or
/// error).
fn pump_stderr(stderr: &mut Option<ChildStderr>, tail: &mut Tail) -> bool {
    let Some(s) = stderr else { return false };
    let mut buf = [0u8; 8192];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return false,
            Ok(n) => tail.push(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
}

/// Writes what the stdin pipe takes now; false once everything is written
/// (the pipe is then closed, so the child sees EOF) or the child closed its
/// end. A program that does not read its stdin is not an error by itself:
/// its exit status decides.
fn pump_stdin(stdin: &mut Option<ChildStdin>, pending: &mut &[u8]) -> bool {
    let Some(s) = stdin else { return false };
    while !pending.is_empty() {
        match s.write(pending) {
            Ok(0) => return false,
            Ok(n) => *pending = pending.get(n..).unwrap_or_default(),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
    false
}

/// Reads stderr to EOF after the group was killed, for at most
/// [`STDERR_GRACE`].
fn drain_stderr(mut stderr: Option<ChildStderr>, tail: &mut Tail) {
    let until = Instant::now() + STDERR_GRACE;
    while let Some(s) = &stderr {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        let mut fds = [libc::pollfd {
            fd: s.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        }];
        if poll(&mut fds, Some(left)).is_err() || !pump_stderr(&mut stderr, tail) {
            return;
        }
    }
}

/// The last [`STDERR_TAIL`] bytes of a stream.
#[derive(Default)]
struct Tail {
    buf: Vec<u8>,
    cut: bool,
}

impl Tail {
    fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
        // Trim only once twice the limit is reached, so a chatty program
        // costs amortised O(1) per byte rather than a shift per read.
        if self.buf.len() > 2 * STDERR_TAIL {
            let excess = self.buf.len() - STDERR_TAIL;
            self.buf.drain(..excess);
            self.cut = true;
        }
    }

    /// `"; stderr: …"`, or `""` when the program wrote nothing.
    fn render(&self) -> String {
        let start = self.buf.len().saturating_sub(STDERR_TAIL);
        let cut = self.cut || start > 0;
        let bytes = self.buf.get(start..).unwrap_or_default();
        let text = String::from_utf8_lossy(bytes);
        let text = text.trim();
        if text.is_empty() {
            String::new()
        } else if cut {
            format!("; stderr: …{text}")
        } else {
            format!("; stderr: {text}")
        }
    }
}

/// A tiny HTTP/1.1 server on 127.0.0.1 for tests of this module and of
/// `events::webhook`: records requests, answers with scripted replies.
#[cfg(test)]
pub(crate) mod test_http {
    use std::io::{BufRead, BufReader, Write};
    use std::net::{SocketAddr, TcpListener, TcpStream};
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
        addr: SocketAddr,
        requests: Arc<Mutex<Vec<Request>>>,
        stop: Arc<AtomicBool>,
        thread: Option<JoinHandle<()>>,
    }

    impl Server {
        /// The i-th request gets `replies[i]`; later ones get the last reply.
        pub fn start(replies: Vec<Reply>) -> Server {
            let listener = TcpListener::bind("127.0.0.1:0").expect("bind test server");
            let addr = listener.local_addr().expect("test server address");
            let requests = Arc::new(Mutex::new(Vec::new()));
            let stop = Arc::new(AtomicBool::new(false));
            let (reqs, stp) = (requests.clone(), stop.clone());
            let thread = std::thread::spawn(move || {
                for (i, conn) in listener.incoming().enumerate() {
                    if stp.load(Ordering::SeqCst) {
                        return;
                    }
                    let Ok(conn) = conn else { continue };
                    let reply = replies
                        .get(i)
                        .or(replies.last())
                        .cloned()
                        .unwrap_or_else(Reply::echo);
                    serve(conn, &reply, &reqs, &stp);
                }
            });
            Server {
                url: format!("http://{addr}"),
                addr,
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
            // Wake the accept loop so that it sees `stop`.
            let _ = TcpStream::connect(self.addr);
            if let Some(t) = self.thread.take() {
                let _ = t.join();
            }
        }
    }

    fn serve(conn: TcpStream, reply: &Reply, reqs: &Mutex<Vec<Request>>, stop: &AtomicBool) {
        let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
        let mut reader = BufReader::new(&conn);
        let Some(req) = read_request(&mut reader) else {
            return;
        };
        let body = reply.body.clone().unwrap_or_else(|| req.body.clone());
        if let Ok(mut r) = reqs.lock() {
            r.push(req);
        }
        let until = Instant::now() + reply.delay;
        while Instant::now() < until && !stop.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(10));
        }
        let head = format!(
            "HTTP/1.1 {} Test\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            reply.status,
            body.len()
        );
        let mut w = &conn;
        let _ = w.write_all(head.as_bytes());
        let _ = w.write_all(&body);
        let _ = w.flush();
    }

    fn read_request(r: &mut impl BufRead) -> Option<Request> {
        let mut line = String::new();
        r.read_line(&mut line).ok()?;
        let mut parts = line.split_whitespace();
        let method = parts.next()?.to_string();
        let path = parts.next()?.to_string();
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            r.read_line(&mut h).ok()?;
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            let (k, v) = h.split_once(':')?;
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
        let mut req = Request {
            method,
            path,
            headers,
            body: Vec::new(),
        };
        if req
            .header("transfer-encoding")
            .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
        {
            loop {
                let mut size = String::new();
                r.read_line(&mut size).ok()?;
                let n = usize::from_str_radix(size.trim(), 16).ok()?;
                let mut chunk = vec![0; n + 2];
                r.read_exact(&mut chunk).ok()?;
                if n == 0 {
                    break;
                }
                req.body.extend_from_slice(&chunk[..n]);
            }
        } else if let Some(len) = req.header("content-length") {
            let n: usize = len.parse().ok()?;
            req.body = vec![0; n];
            r.read_exact(&mut req.body).ok()?;
        }
        Some(req)
    }
}

#[cfg(test)]
mod tests {
    use super::test_http::{Reply, Server};
    use super::*;

    fn argv(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    /// A temp dir with `in` holding `data`; returns (dir, in, out).
    fn setup(data: &[u8]) -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
        let dir = tempfile::tempdir().expect("tempdir");
        let input = dir.path().join("in");
        std::fs::write(&input, data).expect("write input");
        let output = dir.path().join("out");
        (dir, input, output)
    }

    const T: Duration = Duration::from_secs(10);

    #[test]
    fn exec_success_streams_stdin_to_stdout() {
        let (_d, i, o) = setup(b"hello world");
        run_exec(&argv(&["tr", "a-z", "A-Z"]), &i, &o, T).expect("tr runs");
        assert_eq!(std::fs::read(&o).expect("output"), b"HELLO WORLD");
    }

    #[test]
    fn exec_output_is_truncated() {
        let (_d, i, o) = setup(b"ab");
        std::fs::write(&o, b"much longer old content").expect("old output");
        run_exec(&argv(&["cat"]), &i, &o, T).expect("cat runs");
        assert_eq!(std::fs::read(&o).expect("output"), b"ab");
    }

    #[test]
    fn exec_nonzero_exit_names_program_status_and_stderr() {
        let (_d, i, o) = setup(b"");
        let e = run_exec(&argv(&["sh", "-c", "echo boom >&2; exit 3"]), &i, &o, T)
            .expect_err("exit 3 must fail");
        assert!(e.contains("`sh`"), "{e}");
        assert!(e.contains("exit status: 3"), "{e}");
        assert!(e.contains("boom"), "{e}");
    }

    #[test]
    fn exec_death_by_signal_fails() {
        let (_d, i, o) = setup(b"");
        let e = run_exec(&argv(&["sh", "-c", "kill -TERM $$"]), &i, &o, T)
            .expect_err("signal must fail");
        assert!(e.contains("signal"), "{e}");
    }

    #[test]
    fn exec_stderr_tail_is_bounded() {
        let (_d, i, o) = setup(b"");
        let script = "head -c 100000 /dev/zero | tr '\\0' x >&2; echo THE-END >&2; exit 1";
        let e = run_exec(&argv(&["sh", "-c", script]), &i, &o, T).expect_err("must fail");
        assert!(e.len() < STDERR_TAIL + 200, "error is {} bytes", e.len());
        assert!(e.ends_with("THE-END"), "{e}");
    }

    #[test]
    fn exec_timeout_kills_the_process_group() {
        let (d, i, o) = setup(b"");
        let pidfile = d.path().join("bg.pid");
        let script = format!("sleep 30 & echo $! > '{}'; sleep 30", pidfile.display());
        let start = Instant::now();
        let e = run_exec(
            &argv(&["sh", "-c", &script]),
            &i,
            &o,
            Duration::from_secs(1),
        )
        .expect_err("must time out");
        let elapsed = start.elapsed();
        assert!(e.contains("timed out after 1 s"), "{e}");
        assert!(elapsed >= Duration::from_millis(900), "{elapsed:?}");
        assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
        // The background sleep was in the group, so it is gone too (or a
        // zombie waiting for init to reap it).
        let pid = std::fs::read_to_string(&pidfile).expect("pid file");
        let stat = format!("/proc/{}/stat", pid.trim());
        let until = Instant::now() + Duration::from_secs(2);
        loop {
            match std::fs::read_to_string(&stat) {
                Err(_) => break,
                Ok(s)
                    if s.rsplit(')')
                        .next()
                        .is_some_and(|r| r.trim_start().starts_with('Z')) =>
                {
                    break;
                }
                Ok(s) => assert!(Instant::now() < until, "background job alive: {s}"),
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn exec_program_not_found() {
        let (_d, i, o) = setup(b"");
        let e = run_exec(&argv(&["storgate-no-such-program-x"]), &i, &o, T).expect_err("must fail");
        assert!(
            e.contains("cannot start `storgate-no-such-program-x`"),
            "{e}"
        );
        assert!(run_exec(&[], &i, &o, T).is_err());
    }

    #[test]
    fn exec_program_not_reading_stdin_is_fine() {
        let (_d, i, o) = setup(&vec![7u8; 1 << 20]);
        run_exec(&argv(&["true"]), &i, &o, T).expect("true ignores stdin");
        // Same through a pipe (exec webhooks): EPIPE is not an error.
        let big = vec![7u8; 1 << 20];
        let spec = ChildSpec {
            program: Path::new("true"),
            args: &[],
            env: &[],
            stdin: ChildInput::Bytes(&big),
            stdout: ChildOutput::Discard,
        };
        run_child(spec, T).expect("true ignores piped stdin");
    }

    #[test]
    fn exec_large_input_through_cat() {
        let data: Vec<u8> = (0..8u32 << 20)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let (_d, i, o) = setup(&data);
        run_exec(&argv(&["cat"]), &i, &o, T).expect("cat runs");
        assert!(std::fs::read(&o).expect("output") == data, "output differs");
    }

    #[test]
    fn child_gets_piped_bytes_and_env() {
        let (d, _i, _o) = setup(b"");
        let out = d.path().join("seen");
        let script = format!(
            "cat > '{}'; echo \"$FOO\" >> '{}'",
            out.display(),
            out.display()
        );
        let data = vec![b'x'; 300_000];
        let spec = ChildSpec {
            program: Path::new("sh"),
            args: &argv(&["-c", &script]),
            env: &[("FOO", "bar")],
            stdin: ChildInput::Bytes(&data),
            stdout: ChildOutput::Discard,
        };
        run_child(spec, T).expect("script runs");
        let seen = std::fs::read(&out).expect("seen");
        assert_eq!(seen.len(), data.len() + 4);
        assert!(seen.ends_with(b"bar\n"));
    }

    #[test]
    fn http_200_echo() {
        let server = Server::start(vec![Reply::echo()]);
        let (_d, i, o) = setup(b"some image bytes");
        let url = format!("{}/fn/resize", server.url);
        run_http(&url, &i, &o, T).expect("200");
        assert_eq!(std::fs::read(&o).expect("output"), b"some image bytes");
        let reqs = server.requests();
        assert_eq!(reqs.len(), 1);
        assert_eq!(reqs[0].method, "POST");
        assert_eq!(reqs[0].path, "/fn/resize");
        assert_eq!(
            reqs[0].header("content-type"),
            Some("application/octet-stream")
        );
    }

    #[test]
    fn http_500_is_an_error_with_status_and_body_excerpt() {
        let mut body = b"internal trouble ".to_vec();
        body.extend(std::iter::repeat_n(b'z', 4000));
        let server = Server::start(vec![Reply::status(500, &body)]);
        let (_d, i, o) = setup(b"x");
        let e = run_http(&server.url, &i, &o, T).expect_err("500 fails");
        assert!(e.contains("500"), "{e}");
        assert!(e.contains("internal trouble"), "{e}");
        assert!(e.len() < 700, "{} bytes", e.len());
        assert!(!o.exists(), "no output on failure");
    }

    #[test]
    fn http_timeout() {
        let server = Server::start(vec![Reply {
            delay: Duration::from_secs(4),
            ..Reply::echo()
        }]);
        let (_d, i, o) = setup(b"x");
        let start = Instant::now();
        let e = run_http(&server.url, &i, &o, Duration::from_secs(1)).expect_err("times out");
        let elapsed = start.elapsed();
        assert!(elapsed < Duration::from_millis(2500), "{elapsed:?}");
        assert!(e.to_lowercase().contains("timeout"), "{e}");
    }

    #[test]
    fn http_connection_refused() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let (_d, i, o) = setup(b"x");
        let e =
            run_http(&format!("http://127.0.0.1:{port}/f"), &i, &o, T).expect_err("nobody listens");
        assert!(e.starts_with("POST http://127.0.0.1:"), "{e}");
    }
}
