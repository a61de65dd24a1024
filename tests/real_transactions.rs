//! Transactions through a pool of transactional producers against a REAL
//! Kafka broker (Rust API), read back with read_committed consumers, and the
//! broker's own view of the transactional ids (Kafka's TransactionsCommand).
//!
//! Needs WDPOOL_KAFKA_BOOTSTRAP (every test panics without it), and the
//! broker's jars for `scripts/kafka.sh run-class` (fetched by `start`):
//!
//!     eval "$(scripts/kafka.sh start)"
//!     WDPOOL_KAFKA_BOOTSTRAP=$KAFKA_BOOTSTRAP cargo test --test real_transactions
//!     scripts/kafka.sh stop
//!
//! Not here because tests/real_broker.rs has it already: an aborted
//! transaction's records never reach read_committed while a later committed
//! marker does (`c_abi_transactions_commit_fail_and_abort_against_read_committed`),
//! and fencing.

mod common;
mod real_common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::EventLog;
use real_common::*;
use wdpool::events::EventKind;
use wdpool::kafka::{Completion, Message, Report};
use wdpool::pool::Options;
use wdpool::producer_pool::ProducerPool;

/// Reading back: generous, the loops end as soon as everything is there.
const READ: Duration = Duration::from_secs(30);
/// Checkout timeout: the first checkouts run init_transactions.
const CHECKOUT: Duration = Duration::from_secs(30);
/// Every producer's `max_wait_timeout`: a hang fails instead of waiting 180 s.
const MAX_WAIT: Duration = Duration::from_secs(30);

/// A pool of `size` transactional producers, `transactional.id` =
/// "<prefix>-<slot index>".
fn txn_pool(bootstrap: &str, prefix: &str, size: usize) -> ProducerPool {
    ProducerPool::new(
        Options { size, timeout: CHECKOUT },
        |c, index| {
            c.set_kafka("bootstrap.servers", bootstrap)?;
            c.set_kafka("transactional.id", &format!("{prefix}-{index}"))?;
            c.set_kafka("transaction.timeout.ms", "30000")?;
            c.max_wait_timeout = MAX_WAIT;
            Ok(())
        },
        false,
    )
    .expect("creating a transactional pool")
}

/// Has every slot of `pool` create its producer (so every transactional id
/// runs init_transactions) by holding `size` leases at once, one per thread,
/// and runs `at_once(lease)` on each while all are held. Returns the slot
/// indexes seen, sorted.
fn on_every_slot(
    pool: &ProducerPool,
    size: usize,
    at_once: impl Fn(&wdpool::producer_pool::ProducerLease) -> wdpool::error::Result<()> + Sync,
) -> Vec<usize> {
    let holding = AtomicUsize::new(0);
    let mut indexes: Vec<usize> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..size)
            .map(|_| {
                let (holding, at_once) = (&holding, &at_once);
                s.spawn(move || {
                    pool.with(None, |lease| {
                        holding.fetch_add(1, Ordering::SeqCst);
                        let until = Instant::now() + Duration::from_secs(60);
                        while holding.load(Ordering::SeqCst) < size {
                            assert!(Instant::now() < until, "not every slot could be checked out at once");
                            std::thread::sleep(Duration::from_millis(5));
                        }
                        at_once(lease)?;
                        Ok(lease.index())
                    })
                    .unwrap_or_else(|e| panic!("holding a producer of every slot: {e}"))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    indexes.sort_unstable();
    indexes
}

fn by_payload(records: &[Record]) -> HashMap<String, Record> {
    records.iter().map(|r| (r.payload_str().to_owned(), r.clone())).collect()
}

// ---------------------------------------------------------------------------
// (a) Many concurrent transactions.

#[test]
fn two_hundred_concurrent_transactions_on_a_pool_of_four_commit_exactly_once() {
    const THREADS: usize = 8;
    const TXNS: usize = 25;
    const PER_TXN: usize = 3;
    let bootstrap = bootstrap();
    let topic = unique("txn-load");
    create_topics(&bootstrap, &[&topic], 3);
    let prefix = txn_prefix("load");
    let log = EventLog::subscribe();
    let pool = txn_pool(&bootstrap, &prefix, 4);

    let slots = on_every_slot(&pool, 4, |_| Ok(()));
    assert_eq!(slots, [0, 1, 2, 3], "every slot was checked out once");
    let s = pool.stats();
    assert_eq!((s.created, s.creations), (4, 4), "{s:?}");

    let started = Instant::now();
    let sent: Mutex<Vec<(String, usize, Report)>> = Mutex::default();
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let (pool, topic, sent) = (&pool, &topic, &sent);
            s.spawn(move || {
                for x in 0..TXNS {
                    let payloads: Vec<String> = (0..PER_TXN).map(|m| format!("t{t}-x{x}-m{m}")).collect();
                    let mut mine = Vec::new();
                    let done = pool
                        .transaction(None, |lease| {
                            assert!(lease.in_transaction(), "the body runs inside a transaction");
                            let messages: Vec<Message<'_>> =
                                payloads.iter().map(|p| Message::new(topic, Some(p.as_bytes()))).collect();
                            let batch = lease.produce_sync(&messages)?;
                            for (i, p) in payloads.iter().enumerate() {
                                mine.push((p.clone(), lease.index(), batch.report(i).expect("a report after produce_sync")));
                            }
                            Ok(Completion::Commit)
                        })
                        .unwrap_or_else(|e| panic!("transaction t{t}-x{x}: {e}"));
                    assert_eq!(done, Completion::Commit, "t{t}-x{x}");
                    sent.lock().unwrap().extend(mine);
                }
            });
        }
    });
    let took = started.elapsed();
    let sent = sent.into_inner().unwrap();
    assert_eq!(sent.len(), THREADS * TXNS * PER_TXN);
    let mut per_slot = BTreeMap::new();
    for (_, index, _) in &sent {
        *per_slot.entry(*index).or_insert(0usize) += 1;
    }
    eprintln!("{} transactions of {PER_TXN} in {took:?}; messages per slot {per_slot:?}", THREADS * TXNS);

    let s = pool.stats();
    assert_eq!((s.in_use, s.idle, s.created, s.creations, s.replaced, s.checkout_timeouts), (0, 4, 4, 4, 0, 0), "{s:?}");
    assert_eq!(log.count(pool.id(), EventKind::TransactionStarted), THREADS * TXNS);
    assert_eq!(log.count(pool.id(), EventKind::TransactionCommitted), THREADS * TXNS);
    assert_eq!(log.count(pool.id(), EventKind::TransactionAborted), 0);

    let records = consume_at_least(&bootstrap, &topic, Isolation::ReadCommitted, sent.len(), READ);
    let expected: Vec<String> = sent.iter().map(|(p, ..)| p.clone()).collect();
    assert_exactly_once(&records, &expected, "transactions topic (read_committed)");
    let got = by_payload(&records);
    for (payload, _, r) in &sent {
        assert!(r.error.is_none(), "{payload}: {r:?}");
        assert_eq!((got[payload].partition, got[payload].offset), (r.partition, r.offset), "{payload}: report vs consumed");
    }
    // One transaction's messages were produced in order by one producer: on
    // a shared partition their offsets increase.
    for t in 0..THREADS {
        for x in 0..TXNS {
            let recs: Vec<&Record> = (0..PER_TXN).map(|m| &got[&format!("t{t}-x{x}-m{m}")]).collect();
            for w in recs.windows(2) {
                if w[0].partition == w[1].partition {
                    assert!(w[1].offset > w[0].offset, "t{t}-x{x}: {:?} then {:?}", w[0], w[1]);
                }
            }
        }
    }
    let report = pool.close(false);
    assert_eq!((report.closed, report.undelivered, report.in_use), (4, 0, 0), "{report:?}");
}

// ---------------------------------------------------------------------------
// (b) The broker knows the pool's transactional ids.

/// `TransactionsCommand list`: tab-separated "TransactionalId Coordinator
/// ProducerId TransactionState" with a header line (Kafka 4.1). Returns
/// id → (producer id, state).
fn list_transactions(bootstrap: &str) -> HashMap<String, (String, String)> {
    let out = run_kafka_tool("org.apache.kafka.tools.TransactionsCommand", &["--bootstrap-server", bootstrap, "list"]);
    let mut lines = out.lines().filter(|l| !l.trim().is_empty());
    let header: Vec<&str> = lines.next().unwrap_or_default().split_whitespace().collect();
    assert_eq!(header, ["TransactionalId", "Coordinator", "ProducerId", "TransactionState"], "list output:\n{out}");
    lines
        .map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            assert_eq!(cols.len(), 4, "list line {l:?}");
            (cols[0].to_owned(), (cols[2].to_owned(), cols[3].to_owned()))
        })
        .collect()
}

#[test]
fn the_pools_transactional_ids_are_listed_by_the_broker() {
    let bootstrap = bootstrap();
    let topic = unique("txn-ids");
    create_topics(&bootstrap, &[&topic], 3);
    let prefix = txn_prefix("ids");
    let pool = txn_pool(&bootstrap, &prefix, 4);

    // Each slot commits one transaction of its own.
    let slots = on_every_slot(&pool, 4, |lease| {
        let payload = format!("slot-{}", lease.index());
        lease.transaction(|| {
            lease.produce_sync(&[Message::new(&topic, Some(payload.as_bytes()))])?;
            Ok(Completion::Commit)
        })?;
        Ok(())
    });
    assert_eq!(slots, [0, 1, 2, 3]);
    let records = consume_at_least(&bootstrap, &topic, Isolation::ReadCommitted, 4, READ);
    let expected: Vec<String> = (0..4).map(|i| format!("slot-{i}")).collect();
    assert_exactly_once(&records, &expected, "one committed transaction per slot");

    // The commit's second phase (PrepareCommit → CompleteCommit) is
    // asynchronous on the broker: poll with a deadline.
    let ids: Vec<String> = (0..4).map(|i| format!("{prefix}-{i}")).collect();
    let until = Instant::now() + Duration::from_secs(60);
    let listed = loop {
        let all = list_transactions(&bootstrap);
        let ours: BTreeMap<String, (String, String)> =
            all.into_iter().filter(|(id, _)| id.starts_with(&format!("{prefix}-"))).collect();
        let done = ids.iter().all(|id| ours.get(id).is_some_and(|(_, state)| state == "CompleteCommit"));
        if done || Instant::now() >= until {
            break ours;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    eprintln!("TransactionsCommand list, ours: {listed:?}");
    assert_eq!(listed.keys().cloned().collect::<Vec<_>>(), ids, "exactly the pool's 4 transactional ids are listed");
    for (id, (producer_id, state)) in &listed {
        assert_eq!(state, "CompleteCommit", "{id}");
        assert!(producer_id.parse::<i64>().is_ok_and(|p| p >= 0), "{id}: producer id {producer_id:?}");
    }
    let producer_ids: BTreeSet<&String> = listed.values().map(|(p, _)| p).collect();
    assert_eq!(producer_ids.len(), 4, "each transactional id has a producer id of its own: {listed:?}");
    assert_eq!(pool.close(false).undelivered, 0);
}

// ---------------------------------------------------------------------------
// (c) Where messages land: by key, by partition_key, by explicit partition.

#[test]
fn keyed_messages_share_a_partition_and_explicit_partitions_are_kept() {
    let bootstrap = bootstrap();
    let topic = unique("txn-part");
    create_topics(&bootstrap, &[&topic], 3);
    let prefix = txn_prefix("part");
    let pool = txn_pool(&bootstrap, &prefix, 2);

    // 5 threads (so both producers) × 10 transactions, each with one message
    // keyed "k-7", one with partition_key "k-7" (no key) and one with an
    // explicit partition 2 (and a key of its own, which must not matter).
    let sent: Mutex<Vec<(String, Report)>> = Mutex::default();
    let slots: Mutex<BTreeSet<usize>> = Mutex::default();
    std::thread::scope(|s| {
        for t in 0..5 {
            let (pool, topic, sent, slots) = (&pool, &topic, &sent, &slots);
            s.spawn(move || {
                for i in 0..10 {
                    let (keyed, pk, p2) = (format!("key-t{t}-{i}"), format!("pk-t{t}-{i}"), format!("p2-t{t}-{i}"));
                    let p2_key = format!("other-key-{t}-{i}");
                    pool.transaction(None, |lease| {
                        slots.lock().unwrap().insert(lease.index());
                        let mut a = Message::new(topic, Some(keyed.as_bytes()));
                        a.key = Some(b"k-7");
                        let mut b = Message::new(topic, Some(pk.as_bytes()));
                        b.partition_key = Some(b"k-7");
                        let mut c = Message::new(topic, Some(p2.as_bytes()));
                        c.key = Some(p2_key.as_bytes());
                        c.partition = 2;
                        let batch = lease.produce_sync(&[a, b, c])?;
                        let mut sent = sent.lock().unwrap();
                        for (j, p) in [&keyed, &pk, &p2].into_iter().enumerate() {
                            sent.push((p.clone(), batch.report(j).unwrap()));
                        }
                        Ok(Completion::Commit)
                    })
                    .unwrap_or_else(|e| panic!("t{t}-{i}: {e}"));
                }
            });
        }
    });
    let sent = sent.into_inner().unwrap();
    assert_eq!(sent.len(), 150);
    eprintln!("slots used: {:?}", slots.lock().unwrap());

    let records = consume_at_least(&bootstrap, &topic, Isolation::ReadCommitted, 150, READ);
    let expected: Vec<String> = sent.iter().map(|(p, _)| p.clone()).collect();
    assert_exactly_once(&records, &expected, "partitioning topic");
    let got = by_payload(&records);
    for (payload, r) in &sent {
        assert!(r.error.is_none(), "{payload}: {r:?}");
        assert_eq!((got[payload].partition, got[payload].offset), (r.partition, r.offset), "{payload}: report vs consumed");
    }

    let keyed: Vec<&Record> = records.iter().filter(|r| r.payload_str().starts_with("key-")).collect();
    let by_pk: Vec<&Record> = records.iter().filter(|r| r.payload_str().starts_with("pk-")).collect();
    let explicit: Vec<&Record> = records.iter().filter(|r| r.payload_str().starts_with("p2-")).collect();
    assert_eq!((keyed.len(), by_pk.len(), explicit.len()), (50, 50, 50));

    let key_partitions: BTreeSet<i32> = keyed.iter().map(|r| r.partition).collect();
    assert_eq!(key_partitions.len(), 1, "key k-7 must map to one partition, from every producer: {key_partitions:?}");
    let k7 = *key_partitions.first().unwrap();
    assert!(keyed.iter().all(|r| r.key.as_deref() == Some(&b"k-7"[..])));

    let pk_partitions: BTreeSet<i32> = by_pk.iter().map(|r| r.partition).collect();
    assert_eq!(pk_partitions, BTreeSet::from([k7]), "partition_key k-7 picks the partition key k-7 gets");
    assert!(by_pk.iter().all(|r| r.key.is_none()), "partition_key does not set the record's key");

    let explicit_partitions: BTreeSet<i32> = explicit.iter().map(|r| r.partition).collect();
    assert_eq!(explicit_partitions, BTreeSet::from([2]), "an explicit partition wins over the key");
    assert!(explicit.iter().all(|r| r.key.as_deref().is_some_and(|k| k.starts_with(b"other-key-"))));

    let s = pool.stats();
    assert_eq!((s.in_use, s.replaced), (0, 0), "{s:?}");
    assert_eq!(pool.close(false).undelivered, 0);
}
