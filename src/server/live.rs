//! Publishes the supervisor view's page from the signalling core: the call layer's live snapshot plus
//! today's IVR funnel per region (`helpline report`'s funnel, fed the CDR lines the core writes).
//!
//! Cheap for signalling on purpose: a page is built only when something happened since the last one
//! *and* a browser is watching, at most every [`PUBLISH_EVERY`] (the run loop's tick); the page shows
//! times growing between pages by itself. Serialising to JSON happens on the HTTP side. It decides
//! nothing about calls and serves nothing.
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::call::Calls;
use crate::telemetry::report::{self, CdrLine, Funnel, FunnelCall, Names};
use crate::telemetry::supervisor::LivePage;

/// The shortest time between two published pages.
pub const PUBLISH_EVERY: Duration = Duration::from_millis(500);
/// Most finished calls the funnel counts (today's, newest kept): bounds memory and the report's cost.
pub const FUNNEL_CALLS: usize = 20_000;
/// Most distinct names (regions, dialed numbers, menus, routes, end reasons) the funnel's calls share.
const FUNNEL_NAMES: usize = 4_096;

/// The page's publisher, owned by the core.
pub struct LivePublisher {
    tx: watch::Sender<Arc<LivePage>>,
    dirty: bool,
    calls: VecDeque<FunnelCall>,
    names: Names,
    /// The funnel of `calls`, rebuilt on the first page after a call finished.
    funnel: Option<BTreeMap<String, Funnel>>,
}

impl LivePublisher {
    /// Publishes into `tx`; the HTTP side keeps one receiver of its own to clone for each stream.
    pub fn new(tx: watch::Sender<Arc<LivePage>>) -> LivePublisher {
        LivePublisher {
            tx,
            dirty: true,
            calls: VecDeque::new(),
            names: Names::new(FUNNEL_NAMES),
            funnel: None,
        }
    }

    /// Something happened: the next tick publishes (if anyone watches).
    pub fn touch(&mut self) {
        self.dirty = true;
    }

    /// A finished call's CDR line (as written to `--cdr`).
    pub fn cdr(&mut self, line: &str) {
        let Ok(parsed) = serde_json::from_str::<CdrLine>(line) else {
            return;
        };
        let Ok(mut call) = FunnelCall::from_line(&parsed) else {
            return;
        };
        call.share_names(&mut self.names);
        if self.calls.len() >= FUNNEL_CALLS {
            self.calls.pop_front();
        }
        self.calls.push_back(call);
        self.funnel = None;
    }

    /// Local midnight: the funnel starts again.
    pub fn new_day(&mut self) {
        self.calls.clear();
        self.names = Names::new(FUNNEL_NAMES);
        self.funnel = None;
        self.dirty = true;
    }

    /// The page now.
    pub fn page(&mut self, calls: &Calls, now: Instant) -> Arc<LivePage> {
        let funnel = match &self.funnel {
            Some(f) => f.clone(),
            None => {
                let f = report::report(self.calls.make_contiguous()).regions;
                self.funnel = Some(f.clone());
                f
            }
        };
        Arc::new(LivePage {
            view: calls.live_view(now),
            funnel,
        })
    }

    /// The tick: publishes when something changed and a stream watches (the HTTP side's own receiver
    /// does not count).
    pub fn tick(&mut self, calls: &Calls, now: Instant) {
        if self.dirty && self.tx.receiver_count() > 1 {
            let page = self.page(calls, now);
            self.tx.send_replace(page);
            self.dirty = false;
        }
    }
}
