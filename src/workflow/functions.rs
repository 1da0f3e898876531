//! Task functions (SPEC §5.4): running an `exec` program or POSTing to an
//! HTTP function, from a source file to an output file.
//!
//! The child process itself (process group, timeout, stderr tail, reaping)
//! is supervised by [`crate::proc`], which exec webhooks share.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;
use std::time::Duration;

use super::error::{WorkflowError, WorkflowResult};
use crate::error::Errno;
use crate::proc::{ChildInput, ChildOutput, ChildSpec, run_child};

/// How much of a non-2xx HTTP response body is kept for the error message.
const HTTP_ERROR_BODY: u64 = 512;

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
) -> WorkflowResult<()> {
    let Some(program) = argv.first() else {
        return Err(WorkflowError::new(
            Errno::EINVAL,
            "exec function: empty argument list",
        ));
    };
    let stdin = File::open(input).map_err(|e| {
        WorkflowError::io(
            format!("exec `{program}`: cannot open {}", input.display()),
            e,
        )
    })?;
    let stdout = File::create(output).map_err(|e| {
        WorkflowError::io(
            format!("exec `{program}`: cannot create {}", output.display()),
            e,
        )
    })?;
    let spec = ChildSpec {
        program: Path::new(program),
        args: &argv[1..],
        env: &[],
        stdin: ChildInput::File(stdin),
        stdout: ChildOutput::File(stdout),
    };
    run_child(spec, timeout)
        .map_err(WorkflowError::from)
        .inspect_err(|e| tracing::warn!(error = %e, "exec function failed"))
}

/// POSTs the bytes of `input` (`Content-Type: application/octet-stream`) to
/// `url`; a 2xx response body is streamed into `output`.
///
/// Non-2xx is an error with the status and the first 512 bytes of the body;
/// so are connection errors. The whole exchange, body included, is bounded by
/// `timeout`. `output` is only created once a 2xx status has arrived.
pub fn run_http(url: &str, input: &Path, output: &Path, timeout: Duration) -> WorkflowResult<()> {
    let body = File::open(input).map_err(|e| {
        WorkflowError::io(format!("POST {url}: cannot open {}", input.display()), e)
    })?;
    let response = http_agent(timeout)
        .post(url)
        .header("Content-Type", "application/octet-stream")
        .send(&body)
        .map_err(|e| WorkflowError::wrap(http_errno(&e), format!("POST {url}: {e}"), e))?;
    let status = response.status();
    let mut reader = response.into_body().into_reader();
    if !status.is_success() {
        return Err(WorkflowError::new(
            Errno::EIO,
            format!("POST {url}: HTTP {status}{}", body_excerpt(&mut reader)),
        ));
    }
    let mut out = File::create(output).map_err(|e| {
        WorkflowError::io(format!("POST {url}: cannot create {}", output.display()), e)
    })?;
    io::copy(&mut reader, &mut out)
        .map_err(|e| WorkflowError::io(format!("POST {url}: reading the response"), e))?;
    Ok(())
}

/// The errno of a request that got no response: ETIMEDOUT for a timeout.
pub(crate) fn http_errno(e: &ureq::Error) -> Errno {
    if matches!(e, ureq::Error::Timeout(_)) {
        Errno::ETIMEDOUT
    } else {
        Errno::EIO
    }
}

/// An agent whose every request, body included, is bounded by `timeout`, and
/// that hands back non-2xx responses (their bodies carry the useful error).
/// Redirects are not followed: a streamed POST body cannot be sent twice, and
/// the spec treats anything but 2xx as a failure.
pub(crate) fn http_agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        // ureq adds the timeout to `Instant::now()` and panics on overflow;
        // the config bounds it, this keeps any other caller safe too.
        .timeout_global(Some(
            timeout.min(Duration::from_secs(crate::config::units::MAX_SECONDS)),
        ))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workflow::test_http::{Reply, Server};
    use std::time::Instant;

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
            .expect_err("exit 3 must fail")
            .to_string();
        assert!(e.contains("`sh`"), "{e}");
        assert!(e.contains("exit status: 3"), "{e}");
        assert!(e.contains("boom"), "{e}");
    }

    #[test]
    fn exec_program_not_found() {
        let (_d, i, o) = setup(b"");
        let e = run_exec(&argv(&["storgate-no-such-program-x"]), &i, &o, T)
            .expect_err("must fail")
            .to_string();
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
        let e = run_http(&server.url, &i, &o, T)
            .expect_err("500 fails")
            .to_string();
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
        let e = run_http(&server.url, &i, &o, Duration::from_secs(1))
            .expect_err("times out")
            .to_string();
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
        let e = run_http(&format!("http://127.0.0.1:{port}/f"), &i, &o, T)
            .expect_err("nobody listens")
            .to_string();
        assert!(e.starts_with("POST http://127.0.0.1:"), "{e}");
    }
}
