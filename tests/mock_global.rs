//! The process-wide global pool, against librdkafka's mock cluster. One test
//! only: the global pool is shared by every test in a binary.

mod common;

use std::time::Duration;

use rdkafka::mocking::MockCluster;

use common::{consume_all, sorted_payloads, topic_name, EventLog};
use wdpool::error::ErrorKind;
use wdpool::events::EventKind;
use wdpool::kafka::Message;
use wdpool::pool::Options;
use wdpool::producer_pool::{self as pp};

#[test]
fn global_pool_setup_replace_and_close() {
    let cluster = MockCluster::new(3).expect("mock cluster");
    let topic = topic_name("global");
    cluster.create_topic(&topic, 1, 1).expect("create topic");
    let bootstrap = cluster.bootstrap_servers();
    let log = EventLog::subscribe();

    assert_eq!(pp::global().err().expect("no global pool yet").kind, ErrorKind::NotSetUp);
    assert!(!pp::is_active());
    assert_eq!(pp::close_global(false), Default::default(), "closing nothing is harmless");

    let configure = |linger: &'static str| {
        let bootstrap = bootstrap.clone();
        move |c: &mut wdpool::kafka::ProducerConfig, _index: usize| {
            c.set_kafka("bootstrap.servers", &bootstrap)?;
            c.set_kafka("linger.ms", linger)?;
            c.max_wait_timeout = Duration::from_secs(10);
            Ok(())
        }
    };
    pp::setup(Options { size: 2, timeout: Duration::from_millis(700) }, configure("500")).expect("setup");
    assert!(pp::is_active());
    let first = pp::global().expect("global");
    assert!(first.is_global());
    let kinds: Vec<_> = log.for_pool(first.id()).iter().map(|e| (e.kind, e.global, e.size, e.timeout_ms)).collect();
    assert_eq!(kinds, vec![(EventKind::Created, true, 2, 700), (EventKind::Setup, true, 2, 700)]);

    // A message still lingering in the first pool when setup replaces it.
    let batch = first.with(None, |p| p.produce_async(&[Message::new(&topic, Some(b"first"))])).expect("produce");
    assert_eq!(batch.pending(), 1);

    pp::setup(Options { size: 1, timeout: Duration::from_secs(1) }, configure("0")).expect("second setup");
    assert!(first.is_closed(), "the replaced global pool was not closed");
    assert_eq!(batch.pending(), 0, "the replaced global pool was not closed gracefully");
    assert!(batch.failure().is_none());
    assert_eq!(log.count(first.id(), EventKind::Shutdown), 1);
    let second = pp::global().expect("second global");
    assert_ne!(second.id(), first.id());
    second.with(None, |p| p.produce_sync(&[Message::new(&topic, Some(b"second"))])).expect("produce");

    let report = pp::close_global(false);
    assert_eq!((report.closed, report.undelivered), (1, 0), "{report:?}");
    assert_eq!(pp::global().err().expect("closed").kind, ErrorKind::Closed);
    assert!(!pp::is_active());
    assert_eq!(second.with(None, |_| Ok(())).unwrap_err().kind, ErrorKind::Closed);
    assert_eq!(pp::close_global(false), report, "closing twice is harmless and reports the first close");
    assert_eq!(log.count(second.id(), EventKind::Shutdown), 1);

    let records = consume_all(&bootstrap, &topic, 2, Duration::from_secs(15));
    assert_eq!(sorted_payloads(&records), vec!["first".to_owned(), "second".to_owned()]);
}
