//! Calling webhooks (SPEC §4.4): a URL gets the payload as a JSON POST (10 s
//! per attempt, 3 attempts with backoff); an executable gets it on stdin with
//! `STORGATE_*` variables in its environment (30 s, one attempt).
//!
//! Names in a payload (`item.path`, `filename`, `dirname`, `outputs[].savePath`)
//! are the lossless text of [`crate::name`]: JSON strings must be UTF-8, and
//! that text keeps names that are not UTF-8 exact and distinct.
//!
//! A failing webhook never fails the item: [`WebhookCaller::call`] logs a
//! warning, counts the failure and hands the description back for the caller
//! to record if it wants to.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use backon::BlockingRetryable;

use super::error::{WorkflowError, WorkflowResult};
use super::functions::{body_excerpt, http_agent, http_errno};
use crate::config::Webhook;
use crate::error::Errno;
use crate::proc::{ChildInput, ChildOutput, ChildSpec, run_child};

/// Per-attempt timeout of a URL hook (SPEC §4.4).
const URL_TIMEOUT: Duration = Duration::from_secs(10);
/// Timeout of an executable hook (SPEC §4.4).
const EXEC_TIMEOUT: Duration = Duration::from_secs(30);

/// What an executable hook finds in its environment.
pub struct WebhookEnv<'a> {
    /// `STORGATE_EVENT`: onGet, onPut, onDelete or onBatch.
    pub event: &'a str,
    /// `STORGATE_BUCKET`.
    pub bucket: &'a str,
    /// `STORGATE_PATH`: the item's bucket path, the same lossless text as
    /// the payload's `item.path` ([`crate::name`]).
    pub path: &'a str,
    /// `STORGATE_HOOK`: onItemCompleted, onItemAborted, …
    pub hook: &'a str,
}

/// Calls webhooks and counts calls and failures. Shared by the workers
/// (`&self` only; counters are atomic, the HTTP agent is thread-safe).
pub struct WebhookCaller {
    agent: ureq::Agent,
    exec_timeout: Duration,
    /// Pause before the 2nd, 3rd… attempt of a URL hook; attempts in all are
    /// one more than its length.
    backoff: Vec<Duration>,
    calls: AtomicU64,
    failures: AtomicU64,
}

impl Default for WebhookCaller {
    fn default() -> Self {
        Self::new()
    }
}

impl WebhookCaller {
    /// The spec's limits: URL 10 s per attempt, 3 attempts (backoff 0.5 s,
    /// then 2 s); executable 30 s.
    pub fn new() -> Self {
        Self::with_limits(
            URL_TIMEOUT,
            EXEC_TIMEOUT,
            vec![Duration::from_millis(500), Duration::from_secs(2)],
        )
    }

    /// Custom limits (tests). A URL hook is tried `backoff.len() + 1` times.
    pub fn with_limits(
        url_timeout: Duration,
        exec_timeout: Duration,
        backoff: Vec<Duration>,
    ) -> Self {
        WebhookCaller {
            agent: http_agent(url_timeout),
            exec_timeout,
            backoff,
            calls: AtomicU64::new(0),
            failures: AtomicU64::new(0),
        }
    }

    /// Calls `hook` with `payload`; blocks until it succeeded or gave up.
    /// Never panics. On failure logs a warning, counts it and returns the
    /// description.
    pub fn call(
        &self,
        hook: &Webhook,
        payload: &serde_json::Value,
        env: &WebhookEnv,
    ) -> WorkflowResult<()> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        let result = serde_json::to_vec(payload)
            .map_err(|e| {
                WorkflowError::wrap(Errno::EINVAL, format!("cannot encode payload: {e}"), e)
            })
            .and_then(|body| match hook {
                Webhook::Http(url) => self.call_url(url, &body),
                Webhook::Exec(path) => self.call_exec(path, &body, env),
            });
        if let Err(e) = &result {
            self.failures.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                hook = env.hook,
                target = %hook,
                bucket = env.bucket,
                path = ?env.path,
                error = %e,
                "webhook failed"
            );
        }
        result
    }

    /// Webhook calls so far (one per [`call`](Self::call), retries not counted).
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    /// Calls that failed in the end.
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    fn call_url(&self, url: &str, body: &[u8]) -> WorkflowResult<()> {
        let attempts = self.backoff.len() + 1;
        // The pauses are exactly the configured ones (no jitter), so the
        // spec's 3 attempts at 0 s, +0.5 s, +2 s hold.
        let mut attempt = 1;
        (|| self.post_once(url, body))
            .retry(self.backoff.clone().into_iter())
            .sleep(std::thread::sleep)
            .notify(|e: &WorkflowError, _| {
                tracing::debug!(url, attempt, error = %e, "webhook attempt failed");
                attempt += 1;
            })
            .call()
            .map_err(|last| {
                let message = format!("POST {url}: {attempts} attempts failed, last: {last}");
                WorkflowError::wrap(last.errno(), message, last)
            })
    }

    fn post_once(&self, url: &str, body: &[u8]) -> WorkflowResult<()> {
        let response = self
            .agent
            .post(url)
            .header("Content-Type", "application/json")
            .send(body)
            .map_err(|e| WorkflowError::wrap(http_errno(&e), e.to_string(), e))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let mut reader = response.into_body().into_reader();
        Err(WorkflowError::new(
            Errno::EIO,
            format!("HTTP {status}{}", body_excerpt(&mut reader)),
        ))
    }

    fn call_exec(&self, program: &Path, body: &[u8], env: &WebhookEnv) -> WorkflowResult<()> {
        let vars = [
            ("STORGATE_EVENT", env.event),
            ("STORGATE_BUCKET", env.bucket),
            ("STORGATE_PATH", env.path),
            ("STORGATE_HOOK", env.hook),
        ];
        let spec = ChildSpec {
            program,
            args: &[],
            env: &vars,
            stdin: ChildInput::Bytes(body),
            // Hooks must not write into the daemon's own stdout/log.
            stdout: ChildOutput::Discard,
        };
        Ok(run_child(spec, self.exec_timeout)?)
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;
    use std::path::PathBuf;
    use std::time::Instant;

    use super::*;
    use crate::workflow::test_http::{Reply, Server};

    const ENV: WebhookEnv<'static> = WebhookEnv {
        event: "onPut",
        bucket: "media",
        path: "/in/a b.jpg",
        hook: "onItemCompleted",
    };

    fn payload() -> serde_json::Value {
        serde_json::json!({"event": "onPut", "bucket": "media", "item": {"path": "/in/a b.jpg"}, "attempt": 1})
    }

    fn fast() -> WebhookCaller {
        WebhookCaller::with_limits(
            Duration::from_secs(5),
            Duration::from_secs(5),
            vec![Duration::from_millis(50), Duration::from_millis(50)],
        )
    }

    fn script(dir: &Path, body: &str) -> PathBuf {
        let p = dir.join("hook.sh");
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).expect("write script");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        p
    }

    #[test]
    fn payloads_carry_non_utf8_names_as_exact_lossless_text() {
        use std::ffi::OsStr;
        use std::os::unix::ffi::OsStrExt;
        let server = Server::start(vec![Reply::status(204, b""), Reply::status(204, b"")]);
        let caller = fast();
        let hook = Webhook::Http(format!("{}/hook", server.url));
        let st = crate::item::gone_stat(false);
        for name in [&b"bad\xff.jpg"[..], b"bad\xfe.jpg"] {
            let comps = vec![
                OsStr::new("in").to_os_string(),
                OsStr::from_bytes(name).to_os_string(),
            ];
            let item = crate::item::item_of(&comps, &st, 0);
            let payload = serde_json::json!({"item": item});
            caller
                .call(&hook, &payload, &ENV)
                .expect("the payload encodes");
        }
        let items: Vec<serde_json::Value> = server
            .requests()
            .iter()
            .map(|r| {
                assert!(std::str::from_utf8(&r.body).is_ok(), "JSON is UTF-8");
                serde_json::from_slice::<serde_json::Value>(&r.body).expect("JSON")["item"].clone()
            })
            .collect();
        assert_eq!(items.len(), 2);
        assert_ne!(items[0]["path"], items[1]["path"]);
        for (v, name) in items.iter().zip([&b"bad\xff.jpg"[..], b"bad\xfe.jpg"]) {
            let text = v["filename"].as_str().expect("filename");
            assert_eq!(crate::name::to_bytes(text), name, "{v}");
        }
    }

    #[test]
    fn url_hook_retried_after_500_then_succeeds() {
        let server = Server::start(vec![Reply::status(500, b"busy"), Reply::status(204, b"")]);
        let caller = fast();
        let hook = Webhook::Http(format!("{}/hook", server.url));
        caller
            .call(&hook, &payload(), &ENV)
            .expect("2nd attempt succeeds");
        let reqs = server.requests();
        assert_eq!(reqs.len(), 2);
        for r in &reqs {
            assert_eq!(r.method, "POST");
            assert_eq!(r.path, "/hook");
            assert_eq!(r.header("content-type"), Some("application/json"));
            let got: serde_json::Value = serde_json::from_slice(&r.body).expect("JSON body");
            assert_eq!(got, payload());
        }
        assert_eq!((caller.calls(), caller.failures()), (1, 0));
    }

    #[test]
    fn url_hook_gives_up_after_3_attempts() {
        let server = Server::start(vec![Reply::status(500, b"down for good")]);
        let caller = fast();
        let hook = Webhook::Http(server.url.clone());
        let e = caller
            .call(&hook, &payload(), &ENV)
            .expect_err("always 500")
            .to_string();
        assert_eq!(server.requests().len(), 3);
        assert!(e.contains("3 attempts"), "{e}");
        assert!(e.contains("500") && e.contains("down for good"), "{e}");
        assert_eq!((caller.calls(), caller.failures()), (1, 1));
    }

    #[test]
    fn url_hook_timeout_per_attempt() {
        let server = Server::start(vec![Reply {
            delay: Duration::from_secs(3),
            ..Reply::status(200, b"")
        }]);
        let caller = WebhookCaller::with_limits(
            Duration::from_millis(300),
            Duration::from_secs(5),
            vec![Duration::from_millis(10)],
        );
        let start = Instant::now();
        let e = caller
            .call(&Webhook::Http(server.url.clone()), &payload(), &ENV)
            .expect_err("times out")
            .to_string();
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "{:?}",
            start.elapsed()
        );
        assert!(e.contains("2 attempts"), "{e}");
        assert_eq!(caller.failures(), 1);
    }

    #[test]
    fn exec_hook_gets_payload_on_stdin_and_env() {
        let dir = tempfile::tempdir().expect("tempdir");
        let seen = dir.path().join("seen");
        let hook = script(
            dir.path(),
            &format!(
                "cat > '{0}.json'\nprintf '%s|%s|%s|%s' \"$STORGATE_EVENT\" \"$STORGATE_BUCKET\" \"$STORGATE_PATH\" \"$STORGATE_HOOK\" > '{0}.env'\necho noise",
                seen.display()
            ),
        );
        let caller = fast();
        caller
            .call(&Webhook::Exec(hook), &payload(), &ENV)
            .expect("hook runs");
        let json = std::fs::read(dir.path().join("seen.json")).expect("stdin copy");
        let got: serde_json::Value = serde_json::from_slice(&json).expect("JSON on stdin");
        assert_eq!(got, payload());
        let env = std::fs::read_to_string(dir.path().join("seen.env")).expect("env copy");
        assert_eq!(env, "onPut|media|/in/a b.jpg|onItemCompleted");
        assert_eq!((caller.calls(), caller.failures()), (1, 0));
    }

    #[test]
    fn exec_hook_nonzero_exit_is_a_counted_failure() {
        let dir = tempfile::tempdir().expect("tempdir");
        let count = dir.path().join("runs");
        let hook = script(
            dir.path(),
            &format!("echo run >> '{}'\necho nope >&2\nexit 7", count.display()),
        );
        let caller = fast();
        let e = caller
            .call(&Webhook::Exec(hook), &payload(), &ENV)
            .expect_err("exit 7")
            .to_string();
        assert!(e.contains("exit status: 7") && e.contains("nope"), "{e}");
        assert_eq!((caller.calls(), caller.failures()), (1, 1));
        // Not retried: the spec's 3 attempts are for URLs.
        let runs = std::fs::read_to_string(&count).expect("run count");
        assert_eq!(runs.lines().count(), 1);
    }

    #[test]
    fn exec_hook_timeout_is_killed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let hook = script(dir.path(), "exec sleep 30");
        let caller = WebhookCaller::with_limits(
            Duration::from_secs(5),
            Duration::from_millis(500),
            Vec::new(),
        );
        let start = Instant::now();
        let e = caller
            .call(&Webhook::Exec(hook), &payload(), &ENV)
            .expect_err("times out")
            .to_string();
        assert!(e.contains("timed out after 0.5 s"), "{e}");
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "{:?}",
            start.elapsed()
        );
        assert_eq!(caller.failures(), 1);
    }

    #[test]
    fn missing_executable_is_a_failure_not_a_panic() {
        let caller = fast();
        let hook = Webhook::Exec(PathBuf::from("/nonexistent/storgate-hook"));
        assert!(caller.call(&hook, &payload(), &ENV).is_err());
        assert_eq!((caller.calls(), caller.failures()), (1, 1));
    }
}
