//! The on-disk spool of data frames not yet acknowledged by the collector.
//!
//! Layout of the spool directory: one file per frame, `<seq>.frame`, holding the frame's
//! message exactly as it is sent; `state.json` with the newest acknowledged sequence number,
//! the next one to assign and the drop counters. A frame is written to `<seq>.tmp` and
//! renamed, so a crash leaves either the whole frame or nothing. One file per frame keeps
//! dropping any frame (not just the oldest) a single `unlink`.
//!
//! Frames are not fsynced (unlike the agent's keys and certificates, see `files.rs`): a
//! frame is written every second or so, and a flush each time would cost more disk wear than
//! the data is worth. The rename survives the agent's own crash; a power loss can cost the
//! last seconds of frames, and a frame left empty or torn by one is found undecodable on
//! open and removed with a warning, never sent.
//!
//! Invariants:
//! - Sequence numbers only grow, across restarts too: the next number is persisted with
//!   every acknowledgement and drop, and recomputed on open from the frames present.
//! - The spool holds at most `max_bytes` of frames. When a new frame would exceed it, the
//!   oldest periodic frames (stats, disk usage) are dropped first; frames with events,
//!   inventory or host records only when no periodic frame is left. Every dropped record is
//!   counted by kind and reported to the collector in each frame.
//! - Only the frame contents live on disk; memory holds a small index.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use dockermon_proto::Record;
use dockermon_proto::transport::{AgentMessage, DataFrame, Dropped};
use serde::{Deserialize, Serialize};
use tracing::{debug, warn};

#[derive(Debug, thiserror::Error)]
#[error("spool {path}")]
pub struct SpoolError {
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

type Result<T> = std::result::Result<T, SpoolError>;

/// Whether a frame may be dropped before others when the spool is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameClass {
    /// Stats and disk usage: a new sample follows in seconds.
    Periodic,
    /// Events, inventory, host records, profile samples: not repeated.
    Essential,
}

impl FrameClass {
    pub fn of(record: &Record) -> FrameClass {
        match record {
            Record::Stats(_) | Record::Usage(_) => FrameClass::Periodic,
            // Profile samples were asked for and are not repeated.
            Record::Host(_) | Record::Inventory(_) | Record::Event(_) | Record::Profile(_) => {
                FrameClass::Essential
            }
        }
    }
}

#[derive(Debug, Clone)]
struct Entry {
    bytes: u64,
    class: FrameClass,
    /// Records by kind, for the drop counters.
    counts: Dropped,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct State {
    acked: u64,
    next_seq: u64,
    dropped: Dropped,
    /// Docker time of the newest event written to the spool.
    #[serde(default)]
    last_event_ns: Option<i64>,
}

/// Docker time of the newest event a previous run spooled, if any: where a new run resumes
/// following events.
pub fn last_spooled_event(dir: &Path) -> Option<i64> {
    let bytes = std::fs::read(dir.join("state.json")).ok()?;
    serde_json::from_slice::<State>(&bytes).ok()?.last_event_ns
}

pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    frames: BTreeMap<u64, Entry>,
    total_bytes: u64,
    state: State,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SpoolError + '_ {
    move |source| SpoolError {
        path: path.to_owned(),
        source,
    }
}

/// A frame as it goes on the wire: an `AgentMessage::Data`.
fn encode(frame: &DataFrame) -> Vec<u8> {
    #[derive(Serialize)]
    #[serde(tag = "type", rename = "data")]
    struct Wire<'a> {
        #[serde(flatten)]
        frame: &'a DataFrame,
    }
    serde_json::to_vec(&Wire { frame }).expect("records serialise")
}

fn decode(bytes: &[u8]) -> Option<DataFrame> {
    match serde_json::from_slice(bytes).ok()? {
        AgentMessage::Data(frame) => Some(frame),
        _ => None,
    }
}

fn counts(records: &[Record]) -> Dropped {
    let mut counts = Dropped::default();
    for record in records {
        match record {
            Record::Stats(_) => counts.stats += 1,
            Record::Usage(_) => counts.usage += 1,
            Record::Event(_) => counts.events += 1,
            Record::Host(_) | Record::Inventory(_) | Record::Profile(_) => counts.other += 1,
        }
    }
    counts
}

impl Spool {
    /// Opens (creating) the spool in `dir`.
    pub fn open(dir: &Path, max_bytes: u64) -> Result<Spool> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let state_path = dir.join("state.json");
        let state: State = match std::fs::read(&state_path) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|error| {
                warn!(%error, "spool state unreadable; starting from the frames present");
                State::default()
            }),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => State::default(),
            Err(error) => {
                return Err(SpoolError {
                    path: state_path,
                    source: error,
                });
            }
        };
        let mut spool = Spool {
            dir: dir.to_owned(),
            max_bytes,
            frames: BTreeMap::new(),
            total_bytes: 0,
            state,
        };
        for entry in std::fs::read_dir(dir).map_err(io(dir))? {
            let path = entry.map_err(io(dir))?.path();
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default()
                .to_owned();
            if name.ends_with(".tmp") {
                let _ = std::fs::remove_file(&path);
                continue;
            }
            let Some(seq) = name
                .strip_suffix(".frame")
                .and_then(|s| s.parse::<u64>().ok())
            else {
                continue;
            };
            if seq <= spool.state.acked {
                let _ = std::fs::remove_file(&path);
                continue;
            }
            let bytes = std::fs::read(&path).map_err(io(&path))?;
            match decode(&bytes) {
                Some(frame) => {
                    let class = if frame
                        .records
                        .iter()
                        .all(|r| FrameClass::of(r) == FrameClass::Periodic)
                    {
                        FrameClass::Periodic
                    } else {
                        FrameClass::Essential
                    };
                    spool.total_bytes += bytes.len() as u64;
                    spool.frames.insert(
                        seq,
                        Entry {
                            bytes: bytes.len() as u64,
                            class,
                            counts: counts(&frame.records),
                        },
                    );
                }
                None => {
                    warn!(file = %path.display(), "unreadable spooled frame removed");
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
        let newest = spool.frames.keys().next_back().copied().unwrap_or(0);
        spool.state.next_seq = spool
            .state
            .next_seq
            .max(newest + 1)
            .max(spool.state.acked + 1);
        debug!(
            frames = spool.frames.len(),
            bytes = spool.total_bytes,
            next_seq = spool.state.next_seq,
            "spool opened"
        );
        Ok(spool)
    }

    fn frame_path(&self, seq: u64) -> PathBuf {
        self.dir.join(format!("{seq:020}.frame"))
    }

    fn persist_state(&self) -> Result<()> {
        let path = self.dir.join("state.json");
        let temporary = self.dir.join("state.json.tmp");
        let bytes = serde_json::to_vec(&self.state).expect("spool state serialises");
        std::fs::write(&temporary, bytes).map_err(io(&temporary))?;
        std::fs::rename(&temporary, &path).map_err(io(&path))
    }

    /// Writes `records` as the next frame, making room first if needed. Returns its
    /// sequence number.
    pub fn append(&mut self, records: Vec<Record>) -> Result<u64> {
        let seq = self.state.next_seq;
        let class = if records
            .iter()
            .all(|r| FrameClass::of(r) == FrameClass::Periodic)
        {
            FrameClass::Periodic
        } else {
            FrameClass::Essential
        };
        let counts = counts(&records);
        let newest_event = records
            .iter()
            .filter_map(|r| match r {
                Record::Event(event) => Some(event.time_ns),
                _ => None,
            })
            .max();
        let mut frame = DataFrame {
            seq,
            records,
            dropped: self.state.dropped,
        };
        let mut bytes = encode(&frame);
        // Room for the frame (and for its drop counters growing a few digits).
        self.make_room(bytes.len() as u64 + 64)?;
        if frame.dropped != self.state.dropped {
            // Making room dropped frames: this frame reports those drops too.
            frame.dropped = self.state.dropped;
            bytes = encode(&frame);
        }
        let path = self.frame_path(seq);
        let temporary = path.with_extension("tmp");
        let mut file = std::fs::File::create(&temporary).map_err(io(&temporary))?;
        file.write_all(&bytes).map_err(io(&temporary))?;
        std::fs::rename(&temporary, &path).map_err(io(&path))?;
        self.state.next_seq = seq + 1;
        self.total_bytes += bytes.len() as u64;
        self.frames.insert(
            seq,
            Entry {
                bytes: bytes.len() as u64,
                class,
                counts,
            },
        );
        if let Some(newest) = newest_event {
            self.state.last_event_ns = Some(self.state.last_event_ns.unwrap_or(newest).max(newest));
            self.persist_state()?;
        }
        Ok(seq)
    }

    /// Drops frames until `incoming` more bytes fit: periodic ones first, oldest first.
    fn make_room(&mut self, incoming: u64) -> Result<()> {
        let mut dropped_any = false;
        while self.total_bytes + incoming > self.max_bytes && !self.frames.is_empty() {
            let victim = self
                .frames
                .iter()
                .find(|(_, e)| e.class == FrameClass::Periodic)
                .or_else(|| self.frames.iter().next())
                .map(|(seq, _)| *seq)
                .expect("not empty");
            let entry = self.frames.remove(&victim).expect("present");
            self.total_bytes -= entry.bytes;
            let _ = std::fs::remove_file(self.frame_path(victim));
            let d = &mut self.state.dropped;
            d.stats += entry.counts.stats;
            d.usage += entry.counts.usage;
            d.events += entry.counts.events;
            d.other += entry.counts.other;
            dropped_any = true;
            if entry.class == FrameClass::Essential {
                warn!(
                    seq = victim,
                    events = entry.counts.events,
                    "spool full of events: dropped the oldest"
                );
            }
        }
        if dropped_any {
            self.persist_state()?;
        }
        Ok(())
    }

    /// Forgets every frame up to `seq`: the collector has stored them.
    pub fn acknowledge(&mut self, seq: u64) -> Result<()> {
        if seq <= self.state.acked {
            return Ok(());
        }
        let done: Vec<u64> = self.frames.range(..=seq).map(|(s, _)| *s).collect();
        for s in done {
            if let Some(entry) = self.frames.remove(&s) {
                self.total_bytes -= entry.bytes;
            }
            let _ = std::fs::remove_file(self.frame_path(s));
        }
        self.state.acked = seq;
        self.state.next_seq = self.state.next_seq.max(seq + 1);
        self.persist_state()
    }

    /// Called with the collector's newest committed number on every welcome. Normally
    /// that acknowledges frames whose acks were lost. If the collector is ahead of
    /// anything this spool ever numbered, this agent's state was lost (a reinstall): the
    /// spooled frames are renumbered after the collector's, or they would be taken for
    /// duplicates.
    pub fn welcome(&mut self, collector_seq: u64) -> Result<()> {
        if collector_seq < self.state.next_seq {
            return self.acknowledge(collector_seq);
        }
        warn!(
            collector_seq,
            agent_next = self.state.next_seq,
            "the collector is ahead of this agent's spool; renumbering"
        );
        let old: Vec<u64> = self.frames.keys().copied().collect();
        self.state.acked = collector_seq;
        self.state.next_seq = collector_seq + 1;
        for seq in old {
            let path = self.frame_path(seq);
            let frame = std::fs::read(&path).ok().and_then(|bytes| decode(&bytes));
            let entry = self.frames.remove(&seq).expect("present");
            self.total_bytes -= entry.bytes;
            let _ = std::fs::remove_file(&path);
            if let Some(frame) = frame {
                self.append(frame.records)?;
            }
        }
        self.persist_state()
    }

    /// The first frame after `seq`, as it goes on the wire.
    pub fn next_after(&self, seq: u64) -> Result<Option<(u64, String)>> {
        let Some((&next, _)) = self.frames.range(seq + 1..).next() else {
            return Ok(None);
        };
        let path = self.frame_path(next);
        let text = std::fs::read_to_string(&path).map_err(io(&path))?;
        Ok(Some((next, text)))
    }

    pub fn acked(&self) -> u64 {
        self.state.acked
    }

    pub fn dropped(&self) -> Dropped {
        self.state.dropped
    }

    pub fn len(&self) -> usize {
        self.frames.len()
    }

    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    pub fn bytes(&self) -> u64 {
        self.total_bytes
    }
}

#[cfg(test)]
mod tests {
    use dockermon_proto::{
        ContainerId, DiskUsage, DockerEvent, EventKind, StatsCounters, StatsSample,
    };

    use super::*;

    fn stats(n: usize) -> Vec<Record> {
        (0..n)
            .map(|i| {
                Record::Stats(StatsSample {
                    time_ns: i as i64,
                    container_id: ContainerId::from("c"),
                    name: "web".into(),
                    counters: StatsCounters::default(),
                    rates: None,
                })
            })
            .collect()
    }

    fn event(i: i64) -> Record {
        Record::Event(DockerEvent {
            time_ns: i,
            kind: EventKind::Container,
            action: "start".into(),
            actor_id: "c".into(),
            actor_name: None,
            attributes: Default::default(),
            scope: None,
        })
    }

    #[test]
    fn frames_survive_a_restart_and_numbers_keep_growing() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(spool.append(stats(2)).unwrap(), 1);
        assert_eq!(last_spooled_event(dir.path()), None);
        assert_eq!(spool.append(vec![event(1)]).unwrap(), 2);
        assert_eq!(
            last_spooled_event(dir.path()),
            Some(1),
            "where events resume after a crash"
        );
        assert_eq!(spool.append(stats(1)).unwrap(), 3);
        spool.acknowledge(2).unwrap();
        drop(spool);

        let mut spool = Spool::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(spool.len(), 1);
        let (seq, text) = spool.next_after(0).unwrap().unwrap();
        assert_eq!(seq, 3);
        let AgentMessage::Data(frame) = serde_json::from_str(&text).unwrap() else {
            panic!("not a data message")
        };
        assert_eq!((frame.seq, frame.records.len()), (3, 1));
        assert_eq!(spool.append(stats(1)).unwrap(), 4);
        // Everything acknowledged: the number still does not go back after a restart.
        spool.acknowledge(4).unwrap();
        drop(spool);
        let mut spool = Spool::open(dir.path(), 1 << 20).unwrap();
        assert!(spool.is_empty());
        assert_eq!(spool.append(stats(1)).unwrap(), 5);
    }

    #[test]
    fn a_full_spool_drops_periodic_frames_first_and_counts_them() {
        let dir = tempfile::tempdir().unwrap();
        let one_stats_frame = encode(&DataFrame {
            seq: 1,
            records: stats(10),
            dropped: Dropped::default(),
        })
        .len() as u64;
        // Room for about four frames.
        let mut spool = Spool::open(dir.path(), one_stats_frame * 4 + 100).unwrap();
        spool.append(stats(10)).unwrap(); // 1
        spool.append(vec![event(1)]).unwrap(); // 2
        spool.append(stats(10)).unwrap(); // 3
        spool.append(vec![event(2)]).unwrap(); // 4
        for _ in 0..3 {
            spool.append(stats(10)).unwrap(); // 5, 6, 7
        }
        let kept: Vec<u64> = spool.frames.keys().copied().collect();
        assert!(
            kept.contains(&2) && kept.contains(&4),
            "events kept: {kept:?}"
        );
        assert!(
            !kept.contains(&1) && !kept.contains(&3),
            "oldest stats dropped: {kept:?}"
        );
        let stats_kept = kept.iter().filter(|s| ![2, 4].contains(*s)).count() as u64;
        assert_eq!(
            spool.dropped().stats,
            10 * (5 - stats_kept),
            "every dropped sample counted"
        );
        assert_eq!(spool.dropped().events, 0);
        assert!(spool.bytes() <= one_stats_frame * 4 + 100);
        // The next frame reports the drops.
        let last = *kept.last().unwrap();
        let frame = decode(&std::fs::read(spool.frame_path(last)).unwrap()).unwrap();
        assert!(frame.dropped.stats >= 20);

        // With no periodic frame left, the oldest events go, and are counted.
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::open(dir.path(), 400).unwrap();
        let events: Vec<Record> = (0..3).map(event).collect();
        spool.append(events.clone()).unwrap();
        spool.append(events).unwrap();
        assert_eq!(spool.dropped().events, 3);
        drop(spool);
        let reopened = Spool::open(dir.path(), 400).unwrap();
        assert_eq!(
            reopened.dropped().events,
            3,
            "drop counters survive restarts"
        );
    }

    #[test]
    fn a_collector_ahead_of_a_reinstalled_agent_renumbers_the_spool() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::open(dir.path(), 1 << 20).unwrap();
        spool
            .append(vec![Record::Usage(DiskUsage::default())])
            .unwrap();
        spool.append(vec![event(1)]).unwrap();
        spool.welcome(500).unwrap();
        assert_eq!(spool.next_after(500).unwrap().unwrap().0, 501);
        assert_eq!(spool.len(), 2);
        assert_eq!(spool.append(stats(1)).unwrap(), 503);
        // A normal welcome acknowledges what the collector already has.
        spool.welcome(502).unwrap();
        assert_eq!(spool.len(), 1);
    }

    #[test]
    fn torn_and_foreign_files_are_ignored() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("00000000000000000007.tmp"), b"{\"seq\":").unwrap();
        std::fs::write(dir.path().join("00000000000000000008.frame"), b"not json").unwrap();
        std::fs::write(dir.path().join("README"), b"hello").unwrap();
        let spool = Spool::open(dir.path(), 1 << 20).unwrap();
        assert!(spool.is_empty());
        assert!(!dir.path().join("00000000000000000007.tmp").exists());
    }
}
