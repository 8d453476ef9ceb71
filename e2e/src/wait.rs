//! Waiting for a condition with a deadline, never a fixed sleep.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

/// How often a condition is re-checked.
const POLL: Duration = Duration::from_millis(50);

/// Polls `check` until it returns `Some`, or fails after `timeout` naming `what`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return Ok(value);
        }
        if Instant::now() >= deadline {
            anyhow::bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn returns_the_value_once_the_condition_holds() {
        let mut calls = 0;
        let value = eventually(Duration::from_secs(5), "three calls", || {
            calls += 1;
            let done = calls >= 3;
            async move { done.then_some(42) }
        })
        .await
        .unwrap();
        assert_eq!(value, 42);
        assert_eq!(calls, 3);
    }

    #[tokio::test]
    async fn fails_with_what_it_waited_for() {
        let err = eventually(Duration::from_millis(120), "the impossible", || async {
            None::<()>
        })
        .await
        .unwrap_err();
        assert!(err.to_string().contains("the impossible"), "{err}");
    }
}
