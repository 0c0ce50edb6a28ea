//! Ctrl-C during `lab up`: the work stops at the next safe point (never in
//! the middle of a Docker call), so that what it created can be removed.

use tokio::sync::watch;

#[derive(Debug, thiserror::Error)]
#[error("interrupted")]
pub struct Interrupted;

#[derive(Clone)]
pub struct Cancel {
    rx: watch::Receiver<bool>,
}

pub struct CancelHandle {
    tx: watch::Sender<bool>,
}

impl Cancel {
    pub fn new() -> (CancelHandle, Cancel) {
        let (tx, rx) = watch::channel(false);
        (CancelHandle { tx }, Cancel { rx })
    }

    /// A token that is never cancelled.
    pub fn never() -> Cancel {
        Cancel::new().1
    }

    /// Cancelled when Ctrl-C (SIGINT) arrives.
    pub fn on_ctrl_c() -> Cancel {
        let (handle, cancel) = Cancel::new();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                eprintln!("\ninterrupted: stopping at the next safe point");
                handle.cancel();
            }
        });
        cancel
    }

    pub fn check(&self) -> Result<(), Interrupted> {
        if *self.rx.borrow() {
            Err(Interrupted)
        } else {
            Ok(())
        }
    }

    /// Resolves once cancelled.
    pub async fn cancelled(&self) {
        let mut rx = self.rx.clone();
        if rx.wait_for(|c| *c).await.is_err() {
            std::future::pending::<()>().await; // the sender is gone: never cancelled
        }
    }
}

impl CancelHandle {
    pub fn cancel(&self) {
        let _ = self.tx.send(true);
    }
}
