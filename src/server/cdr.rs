//! Appends one JSON line per finished call to the CDR file; it does not decide what a CDR holds (`call`).
use std::path::PathBuf;

use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::call::Cdr;

/// Starts the writer. It ends, having written every record it was sent, when the last sender is dropped —
/// which is how a clean shutdown loses no CDR line.
pub fn start(path: PathBuf) -> (mpsc::UnboundedSender<Cdr>, JoinHandle<()>) {
    let (tx, mut rx) = mpsc::unbounded_channel::<Cdr>();
    let task = tokio::spawn(async move {
        let file = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .await;
        let mut file = match file {
            Ok(f) => f,
            Err(err) => {
                tracing::error!(path = %path.display(), %err, "cannot open the CDR file: CDRs are logged instead");
                while let Some(cdr) = rx.recv().await {
                    tracing::info!(cdr = %serde_json::to_string(&cdr).unwrap_or_default(), "cdr");
                }
                return;
            }
        };
        while let Some(cdr) = rx.recv().await {
            let mut line = match serde_json::to_string(&cdr) {
                Ok(line) => line,
                Err(err) => {
                    tracing::error!(%err, "cdr not serialisable");
                    continue;
                }
            };
            line.push('\n');
            // One write per line keeps lines whole for readers that tail the file; flushed at once so a
            // crash loses nothing already written.
            if let Err(err) = file.write_all(line.as_bytes()).await {
                tracing::error!(%err, "cdr write failed");
            }
            let _ = file.flush().await;
        }
        let _ = file.sync_all().await;
    });
    (tx, task)
}
