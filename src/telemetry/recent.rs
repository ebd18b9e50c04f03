//! The CDR lines of the most recent finished calls, by SIP Call-ID, for `GET /calls/{call-id}`:
//! bounded by count, oldest out first, kept LZ4-compressed in blocks of [`BLOCK`] lines (a CDR line
//! is ~900 bytes of JSON whose keys repeat line after line: a block takes about a sixth of that). It
//! holds what the CDR writer gets; it writes nothing.
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

/// Calls kept by default.
pub const RECENT_CALLS: usize = 10_000;

/// Lines compressed together. Larger blocks compress better and cost more to read one line back
/// (a lookup decompresses its block: 64 lines, ~60 kB, tens of µs).
const BLOCK: usize = 64;

/// A bounded ring of CDR lines.
#[derive(Debug)]
pub struct RecentCalls {
    capacity: usize,
    /// Each Call-ID's latest insertion, by sequence number.
    by_id: HashMap<Arc<str>, u64>,
    /// The sequence number of the first line of `sealed`'s first block.
    base: u64,
    /// Full blocks, oldest first.
    sealed: VecDeque<Block>,
    /// The lines after the last full block (fewer than [`BLOCK`]), uncompressed.
    open: Vec<(Arc<str>, Arc<str>)>,
}

/// [`BLOCK`] lines joined by `\n` (a JSON line has none of its own), compressed; and their Call-IDs,
/// for forgetting them when the block leaves the ring.
#[derive(Debug)]
struct Block {
    ids: Box<[Arc<str>]>,
    lz4: Box<[u8]>,
}

impl RecentCalls {
    /// A ring keeping at least the last `capacity` calls (at least one); up to a block more are
    /// kept, as the oldest leave a block at a time.
    pub fn new(capacity: usize) -> RecentCalls {
        RecentCalls {
            capacity: capacity.max(1),
            by_id: HashMap::new(),
            base: 0,
            sealed: VecDeque::new(),
            open: Vec::with_capacity(BLOCK),
        }
    }

    /// Keeps `line` as the record of `call_id` (a later call reusing the Call-ID replaces it).
    pub fn push(&mut self, call_id: &str, line: Arc<str>) {
        let seq = self.next_seq();
        let id: Arc<str> = Arc::from(call_id);
        self.by_id.insert(id.clone(), seq);
        self.open.push((id, line));
        if self.open.len() == BLOCK {
            self.seal();
        }
        // Lines kept, replaced ones included (the bound holds however often Call-IDs repeat): the
        // oldest block leaves once the rest still hold `capacity`.
        while !self.sealed.is_empty()
            && (self.sealed.len() - 1) * BLOCK + self.open.len() >= self.capacity
        {
            self.drop_oldest_block();
        }
    }

    /// The record of `call_id`, if it is recent.
    pub fn get(&self, call_id: &str) -> Option<Arc<str>> {
        let seq = *self.by_id.get(call_id)?;
        let index = usize::try_from(seq.checked_sub(self.base)?).ok()?;
        let (block, at) = (index / BLOCK, index % BLOCK);
        match self.sealed.get(block) {
            Some(b) => {
                let bytes = lz4_flex::block::decompress_size_prepended(&b.lz4).ok()?;
                let text = std::str::from_utf8(&bytes).ok()?;
                text.split('\n').nth(at).map(Arc::from)
            }
            None => self.open.get(at).map(|(_, line)| line.clone()),
        }
    }

    /// Calls kept.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Whether none is kept.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    fn next_seq(&self) -> u64 {
        self.base + (self.sealed.len() * BLOCK + self.open.len()) as u64
    }

    fn seal(&mut self) {
        let lines = std::mem::replace(&mut self.open, Vec::with_capacity(BLOCK));
        let size = lines.iter().map(|(_, l)| l.len() + 1).sum();
        let mut text = String::with_capacity(size);
        for (i, (_, line)) in lines.iter().enumerate() {
            if i > 0 {
                text.push('\n');
            }
            text.push_str(line);
        }
        let lz4 = lz4_flex::block::compress_prepend_size(text.as_bytes()).into_boxed_slice();
        let ids = lines.into_iter().map(|(id, _)| id).collect();
        self.sealed.push_back(Block { ids, lz4 });
    }

    fn drop_oldest_block(&mut self) {
        let Some(block) = self.sealed.pop_front() else {
            return;
        };
        for (i, id) in block.ids.iter().enumerate() {
            // Only the insertion that is still current removes the entry.
            let seq = self.base + i as u64;
            if self.by_id.get(id) == Some(&seq) {
                self.by_id.remove(id);
            }
        }
        self.base += BLOCK as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(i: usize) -> Arc<str> {
        Arc::from(format!("{{\"call_id\":\"c{i}\",\"n\":{i}}}"))
    }

    #[test]
    fn bounded_by_count_a_block_at_a_time_oldest_out_first() {
        let mut ring = RecentCalls::new(2 * BLOCK);
        for i in 0..3 * BLOCK + 5 {
            ring.push(&format!("c{i}"), line(i));
        }
        // Two full blocks and the open one's five: the oldest block left whole.
        assert_eq!(ring.len(), 2 * BLOCK + 5);
        assert_eq!(ring.get("c0"), None);
        assert_eq!(ring.get(&format!("c{}", BLOCK - 1)), None);
        for i in BLOCK..3 * BLOCK + 5 {
            assert_eq!(ring.get(&format!("c{i}")), Some(line(i)), "c{i}");
        }
    }

    #[test]
    fn a_reused_call_id_answers_its_latest_record_and_the_old_one_does_not_evict_it() {
        let mut ring = RecentCalls::new(BLOCK);
        ring.push("again", Arc::from("first"));
        for i in 1..BLOCK {
            ring.push(&format!("c{i}"), line(i));
        }
        ring.push("again", Arc::from("second"));
        assert_eq!(ring.get("again").as_deref(), Some("second"));
        // The first block (holding "first") leaves; "second" stays findable.
        for i in 0..BLOCK {
            ring.push(&format!("d{i}"), line(i));
        }
        assert_eq!(ring.get("c1"), None);
        assert_eq!(ring.get("again").as_deref(), Some("second"));
    }

    #[test]
    fn a_block_of_cdr_lines_compresses_to_a_fraction() {
        let cdr = |i: usize| {
            format!(
                "{{\"call_id\":\"{i}-4242@127.0.0.1\",\"from\":\"sip:sipp@127.0.0.1:5061\",\
                 \"dialed\":\"08000289999\",\"start\":\"2026-11-27T18:00:{:02}.514Z\",\
                 \"final_status\":200,\"end_reason\":\"caller-bye\",\"route\":null,\
                 \"digits\":[],\"rtcp\":[],\"variables\":{{}}}}",
                i % 60
            )
        };
        let mut ring = RecentCalls::new(BLOCK);
        let mut raw = 0;
        for i in 0..BLOCK {
            let l = cdr(i);
            raw += l.len();
            ring.push(&format!("{i}-4242@127.0.0.1"), Arc::from(l));
        }
        let block = ring.sealed.front().expect("a full block is sealed");
        assert!(block.lz4.len() * 4 < raw, "{} of {raw}", block.lz4.len());
        assert_eq!(
            ring.get("17-4242@127.0.0.1").as_deref(),
            Some(cdr(17).as_str())
        );
    }
}
