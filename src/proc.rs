//! Supervision of short-lived child processes: exec task functions and exec
//! webhooks (`workflow::functions`, `workflow::webhook`).
//!
//! Each child runs in its own process group so that a timeout, or a program
//! that leaves background jobs behind, is cleaned up with one `SIGKILL` to the
//! group; the child is always reaped; the tail of its stderr goes into the
//! error message. The work is done by `tokio::process` on a small
//! current-thread runtime owned by the call, so callers stay plain blocking
//! code (FUSE threads, workers, `storgate workflow run`).

use std::fs::File;
use std::io;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, ChildStderr, Command};

use crate::error::Errno;

/// How much of a failing program's stderr is kept for the error message.
pub const STDERR_TAIL: usize = 2048;
/// After the child has exited and its group is killed, how long we still wait
/// for stderr to reach EOF; only a process that left the group (`setsid`) can
/// hold it open longer, and we don't wait for that one.
const STDERR_GRACE: Duration = Duration::from_millis(500);

/// Why a child did not run to a zero exit. `Display` is the message users
/// see: it names the program and what happened, then the stderr tail.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ProcError {
    errno: Errno,
    message: String,
    #[source]
    source: Option<io::Error>,
}

impl ProcError {
    fn new(errno: Errno, message: String) -> ProcError {
        ProcError {
            errno,
            message,
            source: None,
        }
    }

    fn io(message: String, source: io::Error) -> ProcError {
        ProcError {
            errno: Errno(source.raw_os_error().unwrap_or(libc::EIO)),
            message: format!("{message}: {source}"),
            source: Some(source),
        }
    }

    /// ETIMEDOUT for a timeout, the OS error for a failed start or wait, EIO
    /// for a program that failed.
    pub fn errno(&self) -> Errno {
        self.errno
    }
}

/// Where a child's stdin comes from.
pub enum ChildInput<'a> {
    /// Handed to the child as its stdin directly (no copying by us).
    File(File),
    /// Written through a pipe; the child may stop reading at any point.
    Bytes(&'a [u8]),
}

/// Where a child's stdout goes.
pub enum ChildOutput {
    File(File),
    Discard,
}

/// One program to run: no shell, `program` looked up in PATH when it has no
/// `/`, extra environment on top of ours.
pub struct ChildSpec<'a> {
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
pub fn run_child(spec: ChildSpec, timeout: Duration) -> Result<(), ProcError> {
    // `block_on` panics on a thread that is already inside a runtime (an
    // async caller of this blocking function), so such a caller gets a
    // scoped thread of its own; plain threads run the child right here.
    if tokio::runtime::Handle::try_current().is_ok() {
        let name = spec.program.display().to_string();
        return std::thread::scope(|s| {
            s.spawn(|| run_on_own_runtime(spec, timeout))
                .join()
                .unwrap_or_else(|_| {
                    Err(ProcError::new(
                        Errno::EIO,
                        format!("`{name}`: supervisor panicked"),
                    ))
                })
        });
    }
    run_on_own_runtime(spec, timeout)
}

fn run_on_own_runtime(spec: ChildSpec, timeout: Duration) -> Result<(), ProcError> {
    let name = spec.program.display().to_string();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| ProcError::io(format!("`{name}`: runtime"), e))?;
    rt.block_on(supervise(spec, &name, timeout))
}

async fn supervise(spec: ChildSpec<'_>, name: &str, timeout: Duration) -> Result<(), ProcError> {
    let mut stdin_bytes: &[u8] = &[];
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
    let mut child = spawn(&mut cmd)
        .await
        .map_err(|e| ProcError::io(format!("cannot start `{name}`"), e))?;
    // Our copies of the stdin/stdout files are closed with `cmd`, so the
    // child alone holds them.
    drop(cmd);
    let group = match child.id().and_then(|id| i32::try_from(id).ok()) {
        Some(pid) => Pid::from_raw(pid),
        None => {
            // Cannot happen on Linux for a child not yet waited for.
            let _ = child.start_kill();
            let _ = child.wait().await;
            return Err(ProcError::new(
                Errno::EIO,
                format!("`{name}`: child pid out of range"),
            ));
        }
    };
    let mut stderr = child.stderr.take();
    let stdin = child.stdin.take().filter(|_| !stdin_bytes.is_empty());
    let mut tail = Tail::default();

    let exited = {
        // A program that does not read its stdin is not an error by itself
        // (EPIPE ends the feed quietly): its exit status decides. Dropping
        // the pipe when done gives the child EOF.
        let feed = async move {
            if let Some(mut w) = stdin {
                let _ = w.write_all(stdin_bytes).await;
            }
        };
        let run = async {
            // The child's exit alone ends this phase: a background job may
            // keep stderr open, and a child may never read its stdin.
            let pump = pump(stderr.as_mut(), &mut tail);
            let wait = child.wait();
            tokio::pin!(feed, pump, wait);
            let (mut fed, mut pumped) = (false, false);
            loop {
                tokio::select! {
                    status = &mut wait => break status,
                    () = &mut feed, if !fed => fed = true,
                    () = &mut pump, if !pumped => pumped = true,
                }
            }
        };
        tokio::time::timeout(timeout, run).await
    };

    // Kill the whole group now: on timeout that is the point; after a normal
    // exit it removes background jobs the program left, which would
    // otherwise outlive the task (and keep stderr open). On timeout the leader
    // is still unreaped, so its pid (the group id) cannot have been reused.
    // After a normal exit it was reaped (tokio offers no wait without
    // reaping), but the kernel keeps a group id allocated while any member
    // remains, so the kill reaches our leftovers; with none left it gets
    // ESRCH, unless the pid counter wrapped around `pid_max` in the few
    // microseconds since the reap and a new group took the number, which
    // we accept.
    let _ = killpg(group, Signal::SIGKILL);
    let timed_out = exited.is_err();
    let status = match exited {
        Ok(status) => status,
        Err(_elapsed) => child.wait().await,
    }
    .map_err(|e| ProcError::io(format!("`{name}`: waiting for it"), e))?;
    let _ = tokio::time::timeout(STDERR_GRACE, pump(stderr.as_mut(), &mut tail)).await;

    if timed_out {
        return Err(ProcError::new(
            Errno::ETIMEDOUT,
            format!(
                "`{name}` timed out after {} s{}",
                timeout.as_secs_f64(),
                tail.render()
            ),
        ));
    }
    check_status(name, status, &tail)
}

fn check_status(name: &str, status: ExitStatus, tail: &Tail) -> Result<(), ProcError> {
    if status.success() {
        Ok(())
    } else {
        Err(ProcError::new(
            Errno::EIO,
            format!("`{name}` failed ({status}){}", tail.render()),
        ))
    }
}

/// Spawns, retrying briefly on `ETXTBSY`: an executable that was just written
/// (a hook script being replaced) can still be open for writing in a process
/// forked by another thread at that moment; it clears within milliseconds.
/// Five retries, 10 ms doubling.
async fn spawn(cmd: &mut Command) -> io::Result<Child> {
    let backoff = ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(10))
        .with_factor(2.0)
        .with_max_times(5);
    (|| std::future::ready(cmd.spawn()))
        .retry(backoff)
        .sleep(tokio::time::sleep)
        .when(|e: &io::Error| e.raw_os_error() == Some(libc::ETXTBSY))
        .await
}

/// Reads stderr into `tail` until EOF or a read error.
async fn pump(stderr: Option<&mut ChildStderr>, tail: &mut Tail) {
    let Some(s) = stderr else { return };
    let mut buf = [0u8; 8192];
    loop {
        match s.read(&mut buf).await {
            Ok(0) => return,
            Ok(n) => tail.push(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return,
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

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    const T: Duration = Duration::from_secs(10);

    fn argv(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    /// `sh -c script` with no stdin and stdout discarded.
    fn sh(script: &str, timeout: Duration) -> Result<(), ProcError> {
        let args = argv(&["-c", script]);
        let spec = ChildSpec {
            program: Path::new("sh"),
            args: &args,
            env: &[],
            stdin: ChildInput::Bytes(&[]),
            stdout: ChildOutput::Discard,
        };
        run_child(spec, timeout)
    }

    #[test]
    fn exit_status_and_errno() {
        assert!(sh("exit 0", T).is_ok());
        let e = sh("echo boom >&2; exit 3", T).expect_err("exit 3");
        assert_eq!(e.to_string(), "`sh` failed (exit status: 3); stderr: boom");
        assert_eq!(e.errno(), Errno::EIO);
        let e = sh("sleep 5", Duration::from_millis(200)).expect_err("timeout");
        assert_eq!(e.errno(), Errno::ETIMEDOUT);
    }

    #[test]
    fn program_not_found_names_it() {
        let spec = ChildSpec {
            program: Path::new("storgate-no-such-program-x"),
            args: &[],
            env: &[],
            stdin: ChildInput::Bytes(&[]),
            stdout: ChildOutput::Discard,
        };
        let e = run_child(spec, T).expect_err("not found");
        assert!(
            e.to_string()
                .starts_with("cannot start `storgate-no-such-program-x`: "),
            "{e}"
        );
        assert_eq!(e.errno(), Errno::ENOENT);
    }

    #[test]
    fn piped_stdin_not_read_is_fine() {
        // EPIPE on the feed is not an error: the exit status decides.
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
    fn a_background_job_holding_stderr_does_not_delay_the_result() {
        let start = Instant::now();
        sh("sleep 30 >&2 & exit 0", T).expect("leader exits 0");
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{:?}",
            start.elapsed()
        );
    }

    #[test]
    fn many_children_one_after_another_and_side_by_side() {
        std::thread::scope(|s| {
            for _ in 0..2 {
                s.spawn(|| {
                    for i in 0..20 {
                        let data = format!("item {i}");
                        let spec = ChildSpec {
                            program: Path::new("sh"),
                            args: &argv(&["-c", "sleep 0.01; exec cat"]),
                            env: &[],
                            stdin: ChildInput::Bytes(data.as_bytes()),
                            stdout: ChildOutput::Discard,
                        };
                        run_child(spec, T).expect("child runs");
                    }
                });
            }
        });
    }

    #[test]
    fn works_from_inside_a_runtime() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let e = sh("exit 4", T).expect_err("exit 4");
            assert!(e.to_string().contains("exit status: 4"), "{e}");
        });
    }

    #[test]
    fn exec_death_by_signal_fails() {
        let e = sh("kill -TERM $$", T)
            .expect_err("signal must fail")
            .to_string();
        assert!(e.contains("signal"), "{e}");
    }

    #[test]
    fn exec_stderr_tail_is_bounded() {
        let script = "head -c 100000 /dev/zero | tr '\\0' x >&2; echo THE-END >&2; exit 1";
        let e = sh(script, T).expect_err("must fail").to_string();
        assert!(e.len() < STDERR_TAIL + 200, "error is {} bytes", e.len());
        assert!(e.ends_with("THE-END"), "{e}");
    }

    #[test]
    fn exec_timeout_kills_the_process_group() {
        let d = tempfile::tempdir().expect("tempdir");
        let pidfile = d.path().join("bg.pid");
        let script = format!("sleep 30 & echo $! > '{}'; sleep 30", pidfile.display());
        let start = Instant::now();
        let e = sh(&script, Duration::from_secs(1))
            .expect_err("must time out")
            .to_string();
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
    fn child_gets_piped_bytes_and_env() {
        let d = tempfile::tempdir().expect("tempdir");
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
}
