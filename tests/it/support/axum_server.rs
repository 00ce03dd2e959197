//! One way to run an axum app for a test fixture: its own thread and runtime, on a listener the
//! fixture already bound (so it knows the port first), stopped and joined when dropped.

use std::future::IntoFuture;

pub struct AxumServer {
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl AxumServer {
    /// Serves `app` on `listener` from a thread named `name`.
    pub fn start(name: &str, listener: std::net::TcpListener, app: axum::Router) -> AxumServer {
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();
        let label = name.to_string();
        let thread = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap_or_else(|e| panic!("{label} runtime: {e}"));
                runtime.block_on(async move {
                    let listener =
                        tokio::net::TcpListener::from_std(listener).expect("tokio listener");
                    tokio::select! {
                        result = axum::serve(listener, app).into_future() => {
                            result.unwrap_or_else(|e| panic!("{label} failed: {e}"));
                        }
                        _ = stopped => {}
                    }
                });
            })
            .unwrap_or_else(|e| panic!("spawn {name} thread: {e}"));
        AxumServer {
            shutdown: Some(shutdown),
            thread: Some(thread),
        }
    }
}

impl Drop for AxumServer {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
