//! The durable JSON-lines writer behind the CDR (`--cdr`) and the queue log (`--queue-log`): every
//! record reaches the file whole and in order, or waits in a bounded in-memory spool until it can. It
//! does not decide what a line holds (`call`, `queue::log`) nor whether a call may start (the call
//! layer does, from [`FileHealth::is_full`]).
//!
//! How a line is kept whole and never lost:
//! * one `write(2)` per line (the file is opened for appending), the rest of a short write written at
//!   once; a write that fails half way is cut back off the file (`ftruncate` to where the line began),
//!   so a reader never sees a torn line, and the whole line is retried later;
//! * a record the file refuses (disk full, file or directory removed, permission) stays in the spool;
//!   the spool is retried in order on every new record and on a backoff timer (100 ms doubling to 5 s);
//! * before each line the path is checked to still name the open file: a file removed or renamed
//!   away is reopened (created) there — `SIGUSR1` ([`Writer::reopen`]) forces the same for logrotate;
//! * a clean shutdown writes the whole spool; what still cannot be written after
//!   [`SHUTDOWN_RETRY`] (by default) is logged, line by line, at error level rather than lost.
//!
//! The writer runs on its own thread: file writes and `fsync` block, and must not hold up the
//! signalling core's runtime.
//!
//! Memory is bounded: every record handed over counts toward the spool limit until it is written
//! (new calls are refused `503` while the limit is reached), and the channel to the thread holds at
//! most the spool limit in messages (a record, or a burst's records held by [`Writer::hold`]). The thread moves what arrives into its spool at once, so the channel fills
//! only while a write blocks (a hung disk); a record that finds it full is logged at error level
//! instead (never lost, never waited for), like one sent after the writer is gone.
use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::telemetry::http::FileHealth;
use crate::telemetry::metrics::LineCounters;

/// Records a writer keeps by default while its file refuses writes (`--cdr-spool`).
pub const DEFAULT_SPOOL: usize = 10_000;
/// The first retry after a failed write; doubled up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// The longest wait between retries of a failing file.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// `--cdr-fsync interval`: at most this long between a write and its `fdatasync`.
pub const FSYNC_INTERVAL: Duration = Duration::from_secs(1);
/// How long a shutdown keeps retrying a failing file before it logs the records instead.
pub const SHUTDOWN_RETRY: Duration = Duration::from_secs(5);

/// When a written record is forced to disk (`--cdr-fsync`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FsyncPolicy {
    /// Never: the kernel writes the page cache back in its own time (a power cut may lose the last
    /// seconds of records; a crash of helpline alone loses nothing already written).
    Never,
    /// After every record (`fdatasync` per line: the safest, one disk flush per call).
    Line,
    /// At most [`FSYNC_INTERVAL`] after a write (the default: a power cut loses at most a second).
    #[default]
    Interval,
}

impl std::str::FromStr for FsyncPolicy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "never" => Ok(FsyncPolicy::Never),
            "line" => Ok(FsyncPolicy::Line),
            "interval" => Ok(FsyncPolicy::Interval),
            other => Err(format!(
                "`{other}` is not an fsync policy: never, line or interval"
            )),
        }
    }
}

/// How a writer behaves.
#[derive(Clone, Copy, Debug)]
pub struct WriterOptions {
    /// Records kept while the file refuses writes before new calls are refused (at least 1).
    pub spool: usize,
    /// When records are forced to disk.
    pub fsync: FsyncPolicy,
    /// How long a shutdown retries a file that still refuses writes before it logs the records.
    pub shutdown_retry: Duration,
}

impl Default for WriterOptions {
    fn default() -> Self {
        WriterOptions {
            spool: DEFAULT_SPOOL,
            fsync: FsyncPolicy::default(),
            shutdown_retry: SHUTDOWN_RETRY,
        }
    }
}

/// Records held at most over a burst before they are sent on anyway.
const HELD_LINES: usize = 256;

enum Msg {
    Line(String),
    /// Records held over a burst ([`Writer::hold`]), in order: one wake-up of the thread for all.
    Lines(Vec<String>),
    Reopen,
}

/// The records a writer's senders hold while the core handles a burst; shared by every sender.
#[derive(Default)]
struct Held {
    holding: bool,
    lines: Vec<String>,
}

/// The held records, whatever a panic elsewhere left (the list itself is always whole).
fn held(held: &Mutex<Held>) -> MutexGuard<'_, Held> {
    held.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Hands records to a writer; cheap to clone. Each record is counted in the spool until written.
#[derive(Clone)]
pub struct LineSender {
    tx: mpsc::SyncSender<Msg>,
    health: Arc<FileHealth>,
    what: &'static str,
    held: Arc<Mutex<Held>>,
}

impl LineSender {
    /// Queues one record (without its newline); while the writer holds ([`Writer::hold`]) it waits
    /// with the others of the burst.
    pub fn send(&self, line: String) {
        self.health.add_pending();
        let mut held = held(&self.held);
        if !held.holding {
            drop(held);
            self.hand_over(Msg::Line(line));
            return;
        }
        held.lines.push(line);
        if held.lines.len() >= HELD_LINES {
            let lines = std::mem::take(&mut held.lines);
            drop(held);
            self.hand_over(Msg::Lines(lines));
        }
    }

    /// Sends records to the thread; ones it cannot take now are logged, never waited for.
    fn hand_over(&self, msg: Msg) {
        let (msg, why) = match self.tx.try_send(msg) {
            Ok(()) => return,
            // The writer is blocked in a write and its channel holds the spool's worth: the core
            // does not wait, the records go to the log.
            Err(mpsc::TrySendError::Full(msg)) => (msg, "blocked"),
            // The writer thread is gone (it only ends when every sender is): keep them in the log.
            Err(mpsc::TrySendError::Disconnected(msg)) => (msg, "gone"),
        };
        let lines = match msg {
            Msg::Line(line) => vec![line],
            Msg::Lines(lines) => lines,
            Msg::Reopen => Vec::new(),
        };
        for line in lines {
            self.health.remove_pending();
            tracing::error!(%line, "{} writer {why}: record logged here instead", self.what);
        }
    }

    /// The spool holds its limit (new calls must wait).
    pub fn is_full(&self) -> bool {
        self.health.is_full()
    }
}

/// A running writer: its thread, and the way to ask it to reopen its file.
pub struct Writer {
    tx: mpsc::SyncSender<Msg>,
    health: Arc<FileHealth>,
    what: &'static str,
    held: Arc<Mutex<Held>>,
    thread: std::thread::JoinHandle<()>,
}

impl Writer {
    /// Starts a writer of `what` (e.g. "CDR", "queue log") records into `health.path` (created if
    /// missing, appended to). It ends, having written (or logged) every record, once [`Writer::finish`]
    /// is called and every [`LineSender`] is dropped.
    pub fn start(
        health: Arc<FileHealth>,
        what: &'static str,
        options: WriterOptions,
        counters: Option<LineCounters>,
    ) -> io::Result<Writer> {
        // Bounded by the spool (module doc); one slot more for a reopen.
        let (tx, rx) = mpsc::sync_channel(options.spool.max(1).saturating_add(1));
        let file = FileWriter {
            path: health.path.clone(),
            what,
            file: None,
            spool: VecDeque::new(),
            health: health.clone(),
            counters,
            fsync: options.fsync,
            shutdown_retry: options.shutdown_retry,
            unsynced: None,
            retry_at: None,
            backoff: FIRST_BACKOFF,
            failing: None,
        };
        let thread = std::thread::Builder::new()
            .name(format!(
                "helpline-{}",
                what.replace(' ', "-").to_lowercase()
            ))
            .spawn(move || file.run(rx))?;
        Ok(Writer {
            tx,
            health,
            what,
            held: Arc::default(),
            thread,
        })
    }

    /// A sender for the signalling core.
    pub fn sender(&self) -> LineSender {
        LineSender {
            tx: self.tx.clone(),
            health: self.health.clone(),
            what: self.what,
            held: self.held.clone(),
        }
    }

    /// Holds every sender's records (in order, at most [`HELD_LINES`]) until [`Writer::release`]:
    /// the core's datagram burst, so the thread wakes once per burst, not once per call (0.9 wake-ups
    /// per call at 2,000 calls/s before).
    pub fn hold(&self) {
        held(&self.held).holding = true;
    }

    /// Sends what [`Writer::hold`] held, in one message.
    pub fn release(&self) {
        let lines = {
            let mut held = held(&self.held);
            held.holding = false;
            std::mem::take(&mut held.lines)
        };
        if !lines.is_empty() {
            self.sender().hand_over(Msg::Lines(lines));
        }
    }

    /// Closes and reopens the file at its path (`SIGUSR1`, after logrotate renamed it).
    pub fn reopen(&self) {
        if let Err(mpsc::TrySendError::Full(_)) = self.tx.try_send(Msg::Reopen) {
            // Blocked in a write; the path is checked before each line anyway (module doc).
            tracing::warn!("{} writer blocked: reopen not queued", self.what);
        }
    }

    /// Waits (blocking) until every record sent is written or logged; call it once every
    /// [`LineSender`] is dropped, or it waits for them.
    pub fn finish(self) {
        self.release();
        drop(self.tx);
        if self.thread.join().is_err() {
            tracing::error!("the {} writer thread panicked", self.what);
        }
    }
}

/// The writer thread's state.
struct FileWriter {
    path: PathBuf,
    what: &'static str,
    /// The open file and its identity (device, inode), to notice a removed or renamed path.
    file: Option<(File, (u64, u64))>,
    /// Records not written yet, oldest first, each with its newline.
    spool: VecDeque<String>,
    health: Arc<FileHealth>,
    counters: Option<LineCounters>,
    fsync: FsyncPolicy,
    shutdown_retry: Duration,
    /// When the oldest write not yet forced to disk was made.
    unsynced: Option<Instant>,
    /// The next timed retry, while the file refuses writes.
    retry_at: Option<Instant>,
    backoff: Duration,
    /// Since when, and why, the file refuses writes (logged once per episode).
    failing: Option<(Instant, String)>,
}

impl FileWriter {
    fn run(mut self, rx: mpsc::Receiver<Msg>) {
        self.open();
        self.flush();
        loop {
            let msg = match self.next_wake() {
                Some(at) => {
                    let wait = at.saturating_duration_since(crate::clock::now());
                    rx.recv_timeout(wait)
                }
                None => rx.recv().map_err(|_| mpsc::RecvTimeoutError::Disconnected),
            };
            match msg {
                Ok(msg) => {
                    self.take(msg);
                    // Everything queued meanwhile, then one pass: order is the order sent.
                    while let Ok(msg) = rx.try_recv() {
                        self.take(msg);
                    }
                    // A new record is a retry too, backoff or not.
                    self.flush();
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
            // After a message too: under a steady stream of records the wait never times out, and
            // the interval fsync must still come within its second.
            self.tick();
        }
        self.shutdown();
    }

    fn take(&mut self, msg: Msg) {
        match msg {
            Msg::Line(line) => self.spool_line(line),
            Msg::Lines(lines) => lines.into_iter().for_each(|line| self.spool_line(line)),
            Msg::Reopen => {
                tracing::info!(path = %self.path.display(), "reopening the {} file", self.what);
                self.close();
                self.open();
            }
        }
    }

    fn spool_line(&mut self, mut line: String) {
        line.push('\n');
        self.spool.push_back(line);
    }

    /// The earliest instant the thread must wake without a message: a retry or an fsync.
    fn next_wake(&self) -> Option<Instant> {
        let sync = self.unsynced.map(|at| at + FSYNC_INTERVAL);
        match (self.retry_at.filter(|_| !self.spool.is_empty()), sync) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn tick(&mut self) {
        let now = crate::clock::now();
        if self.retry_at.is_some_and(|at| at <= now) {
            self.flush();
        }
        if self
            .unsynced
            .is_some_and(|at| at + FSYNC_INTERVAL <= crate::clock::now())
        {
            self.sync();
        }
    }

    /// Opens the file for appending (creating it); a failure is recorded and retried with the spool.
    fn open(&mut self) -> bool {
        let opened = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .and_then(|f| {
                let m = f.metadata()?;
                Ok((f, (m.dev(), m.ino())))
            });
        match opened {
            Ok(file) => {
                self.file = Some(file);
                if self.failing.is_none() {
                    self.health.set_ok();
                }
                true
            }
            Err(err) => {
                self.failed(&err, "cannot open");
                false
            }
        }
    }

    /// Forces what was written to disk (per the policy) and closes the file.
    fn close(&mut self) {
        if self.fsync != FsyncPolicy::Never {
            self.sync();
        }
        self.file = None;
    }

    fn sync(&mut self) {
        self.unsynced = None;
        if let Some((file, _)) = &self.file {
            if let Err(err) = file.sync_data() {
                // The lines are in the page cache and stay there; writing them again would duplicate them.
                tracing::error!(%err, path = %self.path.display(), "{} fsync failed", self.what);
            }
        }
    }

    /// Whether the path still names the open file; `false` when it was removed or renamed away (a
    /// path that cannot be looked at, e.g. permission on the directory, is taken to be ours).
    fn path_is_ours(&self) -> bool {
        let Some((_, id)) = &self.file else {
            return false;
        };
        match std::fs::metadata(&self.path) {
            Ok(m) => (m.dev(), m.ino()) == *id,
            Err(err) => err.kind() != io::ErrorKind::NotFound,
        }
    }

    /// Writes the spool, oldest first, until it is empty or the file refuses a line.
    fn flush(&mut self) {
        // Whether the path still names our file is asked once per pass, not per line (a `stat` per
        // record at thousands a second): a file moved away mid-pass gets the rest of the pass's
        // lines, as it would have had the move come a moment later.
        let mut path_checked = false;
        while !self.spool.is_empty() {
            if !path_checked || self.file.is_none() {
                path_checked = true;
                if !self.path_is_ours() {
                    if self.file.is_some() {
                        tracing::info!(path = %self.path.display(), "the {} file was moved or removed: reopening it", self.what);
                        self.close();
                    }
                    if !self.open() {
                        return;
                    }
                }
            }
            let (Some((file, _)), Some(line)) = (&mut self.file, self.spool.front()) else {
                return;
            };
            if let Err(err) = write_whole(file, line.as_bytes()) {
                self.failed(&err, "cannot write");
                return;
            }
            self.spool.pop_front();
            self.health.remove_pending();
            if let Some(c) = &self.counters {
                c.written.increment(1);
                c.spooled.set(self.health.pending() as f64);
            }
            match self.fsync {
                FsyncPolicy::Line => self.sync(),
                FsyncPolicy::Interval => {
                    self.unsynced.get_or_insert_with(crate::clock::now);
                }
                FsyncPolicy::Never => {}
            }
            self.recovered();
        }
    }

    /// The file refused an open or a write: the spool keeps the records; retry later.
    fn failed(&mut self, err: &io::Error, doing: &str) {
        let now = crate::clock::now();
        self.health.set_failed();
        if let Some(c) = &self.counters {
            c.failed.increment(1);
            c.spooled.set(self.health.pending() as f64);
        }
        if self.failing.is_none() {
            tracing::error!(
                path = %self.path.display(), %err, spooled = self.spool.len(),
                "{doing} the {} file: records wait in the spool (limit {}) and are retried",
                self.what, self.health.limit()
            );
            self.failing = Some((now, err.to_string()));
            self.backoff = FIRST_BACKOFF;
        } else {
            self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
        }
        self.retry_at = Some(now + self.backoff);
    }

    /// A write worked: if the file had been refusing, say so once.
    fn recovered(&mut self) {
        if let Some((since, _)) = self.failing.take() {
            tracing::info!(
                path = %self.path.display(),
                after_ms = crate::clock::now().saturating_duration_since(since).as_millis() as u64,
                spooled = self.spool.len(),
                "the {} file takes writes again: writing the spool", self.what
            );
        }
        self.retry_at = None;
        self.backoff = FIRST_BACKOFF;
        self.health.set_ok();
    }

    /// Every sender is gone: write what is left, retrying a failing file for a while, then log it.
    fn shutdown(&mut self) {
        let deadline = crate::clock::now() + self.shutdown_retry;
        self.flush();
        while !self.spool.is_empty() && crate::clock::now() < deadline {
            // Exit path only: a short, bounded sleep between retries of a file that still refuses.
            std::thread::sleep(self.backoff.min(Duration::from_millis(500)));
            self.flush();
        }
        for line in self.spool.drain(..) {
            self.health.remove_pending();
            tracing::error!(line = line.trim_end(), path = %self.path.display(), "{} record not written: logged here instead", self.what);
        }
        self.close();
    }
}

/// Writes `bytes` with one `write(2)`, then the rest of a short write; a write that fails part way is
/// cut back off the file so that no torn line stays in it.
fn write_whole(file: &mut File, bytes: &[u8]) -> io::Result<()> {
    let mut done = 0;
    while done < bytes.len() {
        match file.write(&bytes[done..]) {
            Ok(0) => return cut_back(file, done, io::ErrorKind::WriteZero.into()),
            Ok(n) => done += n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return cut_back(file, done, err),
        }
    }
    Ok(())
}

/// Removes the `done` bytes of a line the file took before `err` (we are its only writer).
fn cut_back(file: &mut File, done: usize, err: io::Error) -> io::Result<()> {
    if done > 0 {
        let cut = file
            .metadata()
            .and_then(|m| file.set_len(m.len().saturating_sub(done as u64)));
        match cut {
            Ok(()) => {
                // Once per retry while the disk is full: debug, the failure itself is logged once.
                tracing::debug!(%err, bytes = done, "a part-written record was cut off the file: it waits whole in the spool")
            }
            Err(cut_err) => {
                tracing::error!(%cut_err, bytes = done, "a part-written record could not be cut off the file")
            }
        }
    }
    Err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "helpline-jsonl-{name}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        dir
    }

    fn writer(path: PathBuf, spool: usize) -> (Writer, Arc<FileHealth>) {
        let health = Arc::new(FileHealth::new(path, "test", spool));
        let options = WriterOptions {
            spool,
            fsync: FsyncPolicy::Line,
            shutdown_retry: Duration::from_millis(200),
        };
        let w = Writer::start(health.clone(), "test", options, None).expect("thread");
        (w, health)
    }

    #[test]
    fn every_line_is_written_whole_and_in_order() {
        let path = temp("order").join("out.jsonl");
        let (w, _) = writer(path.clone(), 100);
        let tx = w.sender();
        for i in 0..50 {
            tx.send(format!("{{\"n\":{i}}}"));
        }
        drop(tx);
        w.finish();
        let text = std::fs::read_to_string(&path).expect("written");
        let want: String = (0..50).map(|i| format!("{{\"n\":{i}}}\n")).collect();
        assert_eq!(text, want);
    }

    #[test]
    fn records_held_over_a_burst_are_sent_together_at_release_in_order() {
        let path = temp("held").join("out.jsonl");
        let (w, health) = writer(path.clone(), 1_000);
        let (cdr, queue_log) = (w.sender(), w.sender());
        w.hold();
        cdr.send("a".into());
        queue_log.send("b".into());
        cdr.send("c".into());
        // Held, not handed to the thread, and still counted toward the spool limit.
        assert_eq!(held(&w.held).lines, ["a", "b", "c"]);
        assert_eq!(health.pending(), 3);
        w.release();
        assert!(held(&w.held).lines.is_empty());
        // A burst longer than the hold limit goes on in pieces, order kept.
        w.hold();
        for i in 0..HELD_LINES + 10 {
            cdr.send(format!("{i}"));
        }
        assert_eq!(held(&w.held).lines.len(), 10);
        drop((cdr, queue_log));
        // Whatever is still held when the writer finishes is written too.
        w.finish();
        let text = std::fs::read_to_string(&path).expect("written");
        let want: String = ["a", "b", "c"]
            .into_iter()
            .map(str::to_owned)
            .chain((0..HELD_LINES + 10).map(|i| i.to_string()))
            .map(|l| l + "\n")
            .collect();
        assert_eq!(text, want);
    }

    #[test]
    fn a_missing_directory_spools_then_writes_everything_once_it_exists() {
        let dir = temp("late-dir");
        let path = dir.join("sub").join("out.jsonl");
        let (w, health) = writer(path.clone(), 4);
        let tx = w.sender();
        for i in 0..4 {
            tx.send(format!("{i}"));
        }
        // Nothing can be written: all four wait, and the spool is full.
        let deadline = Instant::now() + Duration::from_secs(5);
        while !health.is_full() && Instant::now() < deadline {
            std::thread::yield_now();
        }
        assert!(tx.is_full());
        assert!(!path.exists());
        std::fs::create_dir(dir.join("sub")).expect("mkdir");
        // The next record is a retry: everything goes, in order.
        tx.send("4".into());
        drop(tx);
        w.finish();
        assert_eq!(
            std::fs::read_to_string(&path).expect("written"),
            "0\n1\n2\n3\n4\n"
        );
        assert_eq!(health.pending(), 0);
    }

    #[test]
    fn a_removed_file_is_recreated_and_a_renamed_one_left_behind() {
        let dir = temp("moved");
        let path = dir.join("out.jsonl");
        let (w, _) = writer(path.clone(), 10);
        let tx = w.sender();
        tx.send("a".into());
        let deadline = Instant::now() + Duration::from_secs(5);
        while std::fs::read_to_string(&path).unwrap_or_default() != "a\n" {
            assert!(Instant::now() < deadline, "first line never written");
            std::thread::yield_now();
        }
        std::fs::rename(&path, dir.join("out.jsonl.1")).expect("rename");
        tx.send("b".into());
        drop(tx);
        w.finish();
        assert_eq!(
            std::fs::read_to_string(dir.join("out.jsonl.1")).expect("old"),
            "a\n"
        );
        assert_eq!(std::fs::read_to_string(&path).expect("new"), "b\n");
    }

    #[test]
    fn a_device_that_is_always_full_keeps_the_records_and_logs_them_at_exit() {
        // /dev/full refuses every write with ENOSPC.
        let (w, health) = writer(PathBuf::from("/dev/full"), 3);
        let tx = w.sender();
        tx.send("x".into());
        tx.send("y".into());
        let deadline = Instant::now() + Duration::from_secs(5);
        while health.pending() != 2 && Instant::now() < deadline {
            std::thread::yield_now();
        }
        assert_eq!(health.pending(), 2);
        assert!(!tx.is_full());
        tx.send("z".into());
        assert!(tx.is_full());
        drop(tx);
        w.finish();
        assert_eq!(health.pending(), 0, "given up and logged at exit");
    }

    #[test]
    fn fsync_policies_parse() {
        assert_eq!("never".parse(), Ok(FsyncPolicy::Never));
        assert_eq!("line".parse(), Ok(FsyncPolicy::Line));
        assert_eq!("interval".parse(), Ok(FsyncPolicy::Interval));
        assert!("always".parse::<FsyncPolicy>().is_err());
        assert_eq!(FsyncPolicy::default(), FsyncPolicy::Interval);
    }
}
