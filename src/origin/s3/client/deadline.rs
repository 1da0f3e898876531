//! The deadline of every request: an SDK call ends by a deadline of
//! `timeout` from its start, whatever the SDK's retries and pools do (a
//! response body must then keep coming: no pause of `timeout` between two
//! chunks) — and is not sent at all while the endpoint is silent
//! (`health`). Every request goes through here.

use std::future::Future;

use aws_sdk_s3::error::SdkError;
use tokio::time::Instant;

use super::S3Client;
use super::health::{Admit, retry_pause};
use crate::error::Errno;
use crate::origin::{OriginError, OriginResult};

/// Gives a probe's slot back if its request is dropped unfinished (a
/// cancelled part, a caller's own timeout).
struct Slot<'a> {
    client: &'a S3Client,
    probe: bool,
    settled: bool,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        if !self.settled {
            self.client.health.undecided(self.probe);
        }
    }
}

impl S3Client {
    /// The deadline of a request starting now.
    pub(super) fn deadline(&self) -> Instant {
        Instant::now() + self.timeout
    }

    /// Runs the SDK request `fut` by `deadline`. The outer error is ours
    /// (ETIMEDOUT: not sent because the endpoint is silent, or no answer by
    /// the deadline); the inner result is the SDK's, for the caller to map.
    pub(super) async fn bounded<T, E>(
        &self,
        op: &str,
        key: &str,
        deadline: Instant,
        fut: impl Future<Output = Result<T, SdkError<E>>>,
    ) -> OriginResult<Result<T, SdkError<E>>> {
        let probe = match self
            .health
            .admit(std::time::Instant::now(), retry_pause(self.timeout))
        {
            Admit::Go { probe } => probe,
            Admit::Silent(for_how_long) => {
                tracing::debug!(bucket = %self.bucket, key, op, "S3 endpoint silent; request not sent");
                return Err(OriginError::new(
                    Errno::ETIMEDOUT,
                    format!(
                        "{op} {}/{key}: {} has not answered for {}s",
                        self.bucket,
                        self.url,
                        for_how_long.as_secs()
                    ),
                ));
            }
        };
        let mut slot = Slot {
            client: self,
            probe,
            settled: false,
        };
        let res = tokio::time::timeout_at(deadline, fut).await;
        slot.settled = true;
        match res {
            Ok(res) => {
                match &res {
                    Ok(_) => self.answered(probe),
                    Err(SdkError::ServiceError(_) | SdkError::ResponseError(_)) => {
                        self.answered(probe)
                    }
                    Err(SdkError::TimeoutError(_)) => self.timed_out(probe),
                    Err(SdkError::DispatchFailure(d)) if d.is_timeout() => self.timed_out(probe),
                    Err(_) => self.health.undecided(probe),
                }
                Ok(res)
            }
            Err(_) => {
                self.timed_out(probe);
                Err(self.no_answer(op, key))
            }
        }
    }

    /// `fut` (the next chunk of a response body) by `deadline`.
    pub(super) async fn finish_by<T>(
        &self,
        op: &str,
        key: &str,
        deadline: Instant,
        fut: impl Future<Output = T>,
    ) -> OriginResult<T> {
        match tokio::time::timeout_at(deadline, fut).await {
            Ok(v) => Ok(v),
            Err(_) => {
                self.timed_out(false);
                Err(self.no_answer(op, key))
            }
        }
    }

    /// A response body stopped coming (and the SDK gave up on it).
    pub(super) fn stalled(&self) {
        self.timed_out(false);
    }

    fn no_answer(&self, op: &str, key: &str) -> OriginError {
        tracing::warn!(bucket = %self.bucket, key, op, timeout = ?self.timeout,
            "S3 request timed out");
        OriginError::new(
            Errno::ETIMEDOUT,
            format!(
                "{op} {}/{key}: no answer from {} within {:?}",
                self.bucket, self.url, self.timeout
            ),
        )
    }

    fn answered(&self, probe: bool) {
        if self.health.is_silent() {
            tracing::info!(bucket = %self.bucket, endpoint = %self.url, "S3 endpoint answers again");
        }
        self.health.answered(probe);
    }

    fn timed_out(&self, probe: bool) {
        if !self.health.is_silent() {
            tracing::warn!(bucket = %self.bucket, endpoint = %self.url, timeout = ?self.timeout,
                pause = ?retry_pause(self.timeout),
                "S3 endpoint stopped answering; requests fail at once until a probe gets an answer");
        }
        self.health.timed_out(std::time::Instant::now(), probe);
    }

    /// Whether the endpoint is counted silent now.
    pub fn is_silent(&self) -> bool {
        self.health.is_silent()
    }

    /// Counts the endpoint silent (its check at start-up got no answer), so
    /// that the first client calls fail fast instead of each waiting.
    pub fn assume_silent(&self) {
        self.health.assume_silent(std::time::Instant::now());
    }
}
