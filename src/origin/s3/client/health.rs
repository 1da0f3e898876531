//! Whether an endpoint is answering, so that a silent server costs a client
//! one timeout, not one per request.
//!
//! One client call (a `read`, an `ls`) often reaches the daemon as several
//! requests in a row — the kernel retries a failed read-ahead page with a
//! read of its own, `ls` looks the directory up before listing it — and each
//! would wait the full `timeout` of a server that stopped answering. So once
//! a request has timed out the endpoint counts as *silent*: new requests
//! fail at once with ETIMEDOUT, except one probe at a time, let through
//! [`retry_pause`] after the last timeout. Any answer from the server (an
//! error status too) makes it *answering* again. Refused connections are
//! quick anyway and change nothing here. A server that keeps answering never
//! sees any of this.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The state of one endpoint.
#[derive(Debug, Default)]
pub(super) struct Health {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Set by a timeout, cleared by an answer.
    silent_since: Option<Instant>,
    /// When the last request timed out.
    last_timeout: Option<Instant>,
    /// A probe is in flight: everything else fails fast meanwhile.
    probing: bool,
}

/// What a request may do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Admit {
    /// Go ahead (`probe`: it decides whether the endpoint is back).
    Go { probe: bool },
    /// Fail at once: the endpoint has been silent since this long ago.
    Silent(Duration),
}

/// How long after a timeout the next probe waits: short enough that a server
/// that comes back is noticed soon, long enough that the requests of one
/// client call (which follow each other within milliseconds) all fail fast.
pub(super) fn retry_pause(timeout: Duration) -> Duration {
    (timeout / 2).clamp(Duration::from_secs(1), Duration::from_secs(5))
}

impl Health {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn admit(&self, now: Instant, pause: Duration) -> Admit {
        let mut st = self.lock();
        let Some(since) = st.silent_since else {
            return Admit::Go { probe: false };
        };
        let rested = st
            .last_timeout
            .is_none_or(|t| now.saturating_duration_since(t) >= pause);
        if st.probing || !rested {
            return Admit::Silent(now.saturating_duration_since(since));
        }
        st.probing = true;
        Admit::Go { probe: true }
    }

    /// The server answered (any status).
    pub(super) fn answered(&self, probe: bool) {
        let mut st = self.lock();
        st.silent_since = None;
        st.last_timeout = None;
        if probe {
            st.probing = false;
        }
    }

    /// A request got no answer within its deadline.
    pub(super) fn timed_out(&self, now: Instant, probe: bool) {
        let mut st = self.lock();
        st.silent_since.get_or_insert(now);
        st.last_timeout = Some(now);
        if probe {
            st.probing = false;
        }
    }

    /// A request ended without telling whether the server answers (refused,
    /// cancelled): only a probe's slot is given back.
    pub(super) fn undecided(&self, probe: bool) {
        if probe {
            self.lock().probing = false;
        }
    }

    /// Marks the endpoint silent (a failed check at start-up).
    pub(super) fn assume_silent(&self, now: Instant) {
        self.timed_out(now, false);
    }

    pub(super) fn is_silent(&self) -> bool {
        self.lock().silent_since.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAUSE: Duration = Duration::from_secs(2);

    #[test]
    fn an_answering_endpoint_admits_everything() {
        let h = Health::default();
        let t = Instant::now();
        for _ in 0..3 {
            assert_eq!(h.admit(t, PAUSE), Admit::Go { probe: false });
        }
        h.answered(false);
        assert!(!h.is_silent());
    }

    #[test]
    fn after_a_timeout_requests_fail_fast_then_one_probe_goes() {
        let h = Health::default();
        let t0 = Instant::now();
        h.timed_out(t0, false);
        assert!(h.is_silent());
        // Right after the timeout: fail fast (the kernel's retry of a read).
        let later = t0 + Duration::from_millis(10);
        assert!(matches!(h.admit(later, PAUSE), Admit::Silent(_)));
        // After the pause: one probe, the others still fail fast.
        let t1 = t0 + PAUSE;
        assert_eq!(h.admit(t1, PAUSE), Admit::Go { probe: true });
        assert!(matches!(h.admit(t1, PAUSE), Admit::Silent(_)));
        // The probe times out too: the pause starts again from its end.
        let t2 = t1 + Duration::from_secs(3);
        h.timed_out(t2, true);
        assert!(matches!(
            h.admit(t2 + Duration::from_millis(1), PAUSE),
            Admit::Silent(d) if d >= Duration::from_secs(5)
        ));
        // A probe that gets an answer ends it.
        assert_eq!(h.admit(t2 + PAUSE, PAUSE), Admit::Go { probe: true });
        h.answered(true);
        assert_eq!(h.admit(t2 + PAUSE, PAUSE), Admit::Go { probe: false });
    }

    #[test]
    fn an_undecided_probe_frees_the_slot() {
        let h = Health::default();
        let t0 = Instant::now();
        h.assume_silent(t0);
        assert_eq!(h.admit(t0 + PAUSE, PAUSE), Admit::Go { probe: true });
        h.undecided(true);
        assert_eq!(h.admit(t0 + PAUSE, PAUSE), Admit::Go { probe: true });
    }

    #[test]
    fn the_pause_is_bounded() {
        assert_eq!(retry_pause(Duration::from_secs(30)), Duration::from_secs(5));
        assert_eq!(
            retry_pause(Duration::from_secs(3)),
            Duration::from_millis(1500)
        );
        assert_eq!(
            retry_pause(Duration::from_millis(100)),
            Duration::from_secs(1)
        );
    }
}
