//! Appends the queue event log (`serve --queue-log PATH`): one JSON line per record, as the call layer
//! formats it. It does not decide what is logged (`queue::log`, `call`), only writes it.
use std::path::PathBuf;

use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Starts the writer: the file is created if missing and appended to. It ends, having written every
/// line it was sent, when the last sender is dropped, so a clean shutdown loses no line.
pub fn start(path: PathBuf) -> (mpsc::UnboundedSender<String>, JoinHandle<()>) {
    let (tx, mut rx) = mpsc::unbounded_channel::<String>();
    let task = tokio::spawn(async move {
        let file = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .await;
        let mut file = match file {
            Ok(f) => f,
            Err(err) => {
                tracing::error!(path = %path.display(), %err, "cannot open the queue log: its lines are logged instead");
                while let Some(line) = rx.recv().await {
                    tracing::info!(queue_log = %line, "queue log");
                }
                return;
            }
        };
        while let Some(mut line) = rx.recv().await {
            line.push('\n');
            // One write per line (the file is opened for appending) keeps every record whole for
            // readers tailing the file; flushed at once so a crash loses nothing already written.
            if let Err(err) = file.write_all(line.as_bytes()).await {
                tracing::error!(%err, "queue log write failed");
            }
            let _ = file.flush().await;
        }
        let _ = file.sync_all().await;
    });
    (tx, task)
}
