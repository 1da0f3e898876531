//! How long an S3 request may take: the SDK's timeouts and its retry
//! policy (the SDK's own retries; nothing here retries by hand).

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;

pub(super) fn timeout_config(timeout: Duration) -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .operation_attempt_timeout(timeout)
        .operation_timeout(timeout)
        .build()
}

/// Few, short retries: the operation timeout bounds the whole call anyway.
pub(super) fn retry_config(timeout: Duration) -> RetryConfig {
    RetryConfig::standard()
        .with_max_attempts(3)
        .with_initial_backoff(Duration::from_millis(100))
        .with_max_backoff((timeout / 4).clamp(Duration::from_millis(100), Duration::from_secs(2)))
}
