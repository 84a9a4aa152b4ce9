//! Timers.

use std::future::Future;
use std::time::Duration;

/// Sleeps for `d` on the current executor.
pub async fn sleep(d: Duration) {
    glommio::timer::sleep(d).await
}

/// Runs `fut` for at most `d`; `None` if the time ran out first.
pub async fn timeout<T>(d: Duration, fut: impl Future<Output = T>) -> Option<T> {
    futures_lite::future::or(async { Some(fut.await) }, async {
        sleep(d).await;
        None
    })
    .await
}
