//! The stop signal both programs obey.

use std::future::Future;

/// Resolves on SIGINT or SIGTERM (Ctrl-C where there are no Unix signals), and logs which came.
///
/// The handlers are installed when this is called, not when the future is first polled, so a
/// signal that arrives during start-up (the core's migrations) still stops the program cleanly
/// once it serves. Call it inside a Tokio runtime.
pub fn signal() -> impl Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{Signal, SignalKind, signal};
        let listen = |kind: SignalKind, name: &str| {
            signal(kind).inspect_err(|error| tracing::warn!(%error, "cannot listen for {name}")).ok()
        };
        // A signal that cannot be listened for never stops the program: the other one still can.
        let wait = |signal: Option<Signal>| async move {
            match signal {
                Some(mut signal) => {
                    signal.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        let interrupt = wait(listen(SignalKind::interrupt(), "SIGINT"));
        let terminate = wait(listen(SignalKind::terminate(), "SIGTERM"));
        async move {
            tokio::select! {
                () = interrupt => tracing::info!("SIGINT received"),
                () = terminate => tracing::info!("SIGTERM received"),
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            match tokio::signal::ctrl_c().await {
                Ok(()) => tracing::info!("SIGINT received"),
                Err(error) => {
                    tracing::warn!(%error, "cannot listen for SIGINT");
                    std::future::pending::<()>().await;
                }
            }
        }
    }
}
