//! Appends JSON lines to a file for the CDR writer (`--cdr`) and the queue log (`--queue-log`): one
//! whole line per write, flushed at once. It does not decide what a line holds (`call`, `queue::log`).
use std::path::PathBuf;

use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Starts a writer of `what` (e.g. "CDR", "queue log") lines: the file is created if missing and
/// appended to. It ends, having written every line it was sent, when the last sender is dropped — which
/// is how a clean shutdown loses no line. A file that cannot be opened gets its lines logged instead.
pub fn start(path: PathBuf, what: &'static str) -> (mpsc::UnboundedSender<String>, JoinHandle<()>) {
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
                tracing::error!(path = %path.display(), %err, "cannot open the {what} file: its lines are logged instead");
                while let Some(line) = rx.recv().await {
                    tracing::info!(%line, "{what}");
                }
                return;
            }
        };
        while let Some(mut line) = rx.recv().await {
            line.push('\n');
            // One write per line (the file is opened for appending) keeps every record whole for
            // readers tailing the file; flushed at once so a crash loses nothing already written.
            if let Err(err) = file.write_all(line.as_bytes()).await {
                tracing::error!(%err, "{what} write failed");
            }
            let _ = file.flush().await;
        }
        let _ = file.sync_all().await;
    });
    (tx, task)
}
