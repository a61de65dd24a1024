//! Helpers shared by the integration tests (mock cluster and real broker
//! alike): reading a topic back with a plain rdkafka consumer, and recording
//! wdpool's events of one pool.
//!
//! Nothing here knows about the mock cluster: every helper takes a bootstrap
//! string, so tests against a real broker can use them too.

#![allow(dead_code)]

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::ThreadId;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers, Message as _};
use rdkafka::{Offset, TopicPartitionList};

use wdpool::events::{self, Event, EventKind};

/// One record read back from Kafka, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
    /// In wire order; a `None` value is a header with a null value.
    pub headers: Vec<(String, Option<Vec<u8>>)>,
    /// The record's timestamp (create or log-append time), if any.
    pub timestamp_ms: Option<i64>,
}

impl Record {
    /// The payload as text; "<tombstone>" for none.
    pub fn payload_str(&self) -> &str {
        self.payload.as_deref().map_or("<tombstone>", |p| std::str::from_utf8(p).expect("utf-8 payload"))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isolation {
    ReadCommitted,
    ReadUncommitted,
}

impl Isolation {
    pub fn as_str(self) -> &'static str {
        match self {
            Isolation::ReadCommitted => "read_committed",
            Isolation::ReadUncommitted => "read_uncommitted",
        }
    }
}

/// librdkafka properties every client of the tests' own (consumers, admin
/// clients) gets besides `bootstrap.servers`: the credentials and CA of a
/// secured broker. Set once per process, before the first client.
static CLIENT_PROPERTIES: OnceLock<Vec<(String, String)>> = OnceLock::new();

/// Makes the tests' own clients use `props` (see [`CLIENT_PROPERTIES`]).
/// Panics if other properties were set before.
pub fn use_client_properties(props: Vec<(String, String)>) {
    let set = CLIENT_PROPERTIES.get_or_init(|| props.clone());
    assert_eq!(set, &props, "the tests' client properties were already set to others");
}

/// Reads a properties file: `key=value` lines; blank lines and lines
/// starting with `#` are skipped.
pub fn load_properties(path: &std::path::Path) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (k, v) = l.split_once('=').unwrap_or_else(|| panic!("{}: not key=value: {l:?}", path.display()));
            (k.trim().to_owned(), v.trim().to_owned())
        })
        .collect()
}

/// A client configuration for `bootstrap` with the tests' client properties.
pub fn client_config(bootstrap: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    for (k, v) in CLIENT_PROPERTIES.get().map_or(&[][..], Vec::as_slice) {
        c.set(k, v);
    }
    c.set("bootstrap.servers", bootstrap);
    c
}

/// A consumer with no group membership: partitions are assigned explicitly,
/// nothing is committed, and the end of each partition is reported.
pub fn consumer(bootstrap: &str, isolation: Isolation) -> BaseConsumer {
    client_config(bootstrap)
        .set("group.id", format!("wdpool-tests-{}", std::process::id()))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "true")
        .set("isolation.level", isolation.as_str())
        .set("fetch.wait.max.ms", "50")
        .set("topic.metadata.refresh.interval.ms", "1000")
        .create()
        .expect("creating the test consumer")
}

/// The partition ids of `topic`, waiting (up to `deadline`) until the topic
/// is known with at least one partition.
pub fn partitions_of(bootstrap: &str, topic: &str, deadline: Duration) -> Vec<i32> {
    let c = consumer(bootstrap, Isolation::ReadUncommitted);
    let until = Instant::now() + deadline;
    loop {
        let left = until.saturating_duration_since(Instant::now()).max(Duration::from_millis(100));
        if let Ok(md) = c.fetch_metadata(Some(topic), left.min(Duration::from_secs(5))) {
            if let Some(t) = md.topics().iter().find(|t| t.name() == topic && t.error().is_none()) {
                if !t.partitions().is_empty() {
                    let mut ids: Vec<i32> = t.partitions().iter().map(|p| p.id()).collect();
                    ids.sort_unstable();
                    return ids;
                }
            }
        }
        assert!(Instant::now() < until, "topic {topic} has no partitions after {deadline:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Reads every partition of `topic` from the beginning (read_committed) until
/// each partition reported its end and at least `expected` records were read,
/// or `deadline` passed. Returns what was read, in consumption order; the
/// caller asserts on the count (it may be more or fewer than `expected`).
pub fn consume_all(bootstrap: &str, topic: &str, expected: usize, deadline: Duration) -> Vec<Record> {
    consume_all_with(bootstrap, topic, expected, deadline, Isolation::ReadCommitted)
}

pub fn consume_all_with(
    bootstrap: &str,
    topic: &str,
    expected: usize,
    deadline: Duration,
    isolation: Isolation,
) -> Vec<Record> {
    read_until(bootstrap, topic, isolation, deadline, |records, at_end| at_end && records.len() >= expected).0
}

/// Reads every partition of `topic` from the beginning until `done(records,
/// every partition is at its end)` says so, or `deadline` passes. Returns
/// the records in consumption order, and whether `done` said so.
pub fn read_until(
    bootstrap: &str,
    topic: &str,
    isolation: Isolation,
    deadline: Duration,
    mut done: impl FnMut(&[Record], bool) -> bool,
) -> (Vec<Record>, bool) {
    let until = Instant::now() + deadline;
    let partitions = partitions_of(bootstrap, topic, deadline);
    let c = consumer(bootstrap, isolation);
    let mut tpl = TopicPartitionList::new();
    for p in &partitions {
        tpl.add_partition_offset(topic, *p, Offset::Beginning).expect("adding a partition");
    }
    c.assign(&tpl).expect("assigning partitions");

    let all: BTreeSet<i32> = partitions.iter().copied().collect();
    let mut at_end: BTreeSet<i32> = BTreeSet::new();
    let mut records = Vec::new();
    loop {
        if done(&records, at_end == all) {
            return (records, true);
        }
        if Instant::now() >= until {
            return (records, false);
        }
        match c.poll(Duration::from_millis(100)) {
            None => {}
            Some(Err(KafkaError::PartitionEOF(p))) => {
                at_end.insert(p);
            }
            Some(Err(e)) => panic!("consuming {topic} failed: {e}"),
            Some(Ok(m)) => {
                at_end.remove(&m.partition());
                let headers = m
                    .headers()
                    .map(|hs| hs.iter().map(|h| (h.key.to_owned(), h.value.map(<[u8]>::to_vec))).collect())
                    .unwrap_or_default();
                records.push(Record {
                    partition: m.partition(),
                    offset: m.offset(),
                    key: m.key().map(<[u8]>::to_vec),
                    payload: m.payload().map(<[u8]>::to_vec),
                    headers,
                    timestamp_ms: m.timestamp().to_millis(),
                });
            }
        }
    }
}

/// Payloads as strings, sorted: for "each exactly once" comparisons.
pub fn sorted_payloads(records: &[Record]) -> Vec<String> {
    let mut v: Vec<String> = records.iter().map(|r| r.payload_str().to_owned()).collect();
    v.sort();
    v
}

/// Counts per payload; any value other than 1 is a loss or a duplicate.
pub fn payload_counts(records: &[Record]) -> HashMap<String, usize> {
    let mut m = HashMap::new();
    for r in records {
        *m.entry(r.payload_str().to_owned()).or_insert(0) += 1;
    }
    m
}

/// A unique topic name for one test.
pub fn topic_name(test: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!("wdpool-{test}-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

/// Records every wdpool event, with the thread each was dispatched on, until
/// dropped (which unsubscribes). Events are process-wide and tests run in
/// parallel: use [`EventLog::for_pool`] to look at one pool's events.
pub struct EventLog {
    id: u64,
    events: Arc<Mutex<Vec<(Event, ThreadId)>>>,
}

impl EventLog {
    pub fn subscribe() -> Self {
        let events: Arc<Mutex<Vec<(Event, ThreadId)>>> = Arc::default();
        let sink = Arc::clone(&events);
        let id = events::subscribe(Box::new(move |e: &Event| {
            sink.lock().unwrap().push((e.clone(), std::thread::current().id()));
        }));
        EventLog { id, events }
    }

    /// The events of pool `pool_id`, in dispatch order.
    pub fn for_pool(&self, pool_id: u64) -> Vec<Event> {
        self.with_threads(pool_id).into_iter().map(|(e, _)| e).collect()
    }

    /// The events of pool `pool_id` with the thread each was dispatched on.
    pub fn with_threads(&self, pool_id: u64) -> Vec<(Event, ThreadId)> {
        self.events.lock().unwrap().iter().filter(|(e, _)| e.pool_id == pool_id).cloned().collect()
    }

    /// The kinds of pool `pool_id`'s events, in order.
    pub fn kinds(&self, pool_id: u64) -> Vec<EventKind> {
        self.for_pool(pool_id).iter().map(|e| e.kind).collect()
    }

    pub fn count(&self, pool_id: u64, kind: EventKind) -> usize {
        self.for_pool(pool_id).iter().filter(|e| e.kind == kind).count()
    }
}

impl Drop for EventLog {
    fn drop(&mut self) {
        events::unsubscribe(self.id);
    }
}

/// A pool of `size` producers against `bootstrap`, each with `props` and a
/// `max_wait_timeout` of 10 s (so a failing test does not hang for minutes).
pub fn new_pool(bootstrap: &str, size: usize, props: &[(&str, &str)]) -> wdpool::producer_pool::ProducerPool {
    new_pool_with(bootstrap, size, props, |_, _| Ok(()))
}

/// Like [`new_pool`], then `tweak(config, slot index)` for per-slot settings.
pub fn new_pool_with(
    bootstrap: &str,
    size: usize,
    props: &[(&str, &str)],
    mut tweak: impl FnMut(&mut wdpool::kafka::ProducerConfig, usize) -> wdpool::error::Result<()>,
) -> wdpool::producer_pool::ProducerPool {
    let options = wdpool::pool::Options { size, timeout: Duration::from_secs(5) };
    wdpool::producer_pool::ProducerPool::new(
        options,
        |config, index| {
            config.set_kafka("bootstrap.servers", bootstrap)?;
            for (k, v) in props {
                config.set_kafka(k, v)?;
            }
            config.max_wait_timeout = Duration::from_secs(10);
            tweak(config, index)
        },
        false,
    )
    .expect("creating the pool")
}
