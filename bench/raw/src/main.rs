//! The raw baseline of `make bench`: rdkafka's `ThreadedProducer` used
//! directly, as a careful user would, with the same settings as the wdpool
//! side of each row.
//!
//! ```text
//! wdpool-bench-raw throughput --bootstrap B --topic T --messages N --threads 4 --producers 2 [--set k=v]...
//! wdpool-bench-raw txn        --bootstrap B --topic T --producers K --threads 4 --seconds S
//!                             --per-txn 10 --txn-prefix ID [--set k=v]...
//! wdpool-bench-raw latency    --bootstrap B --topic T --messages N --warmup W [--set k=v]...
//! wdpool-bench-raw close      --bootstrap B --topic T --producers P --inflight M --repeat R [--set k=v]...
//! wdpool-bench-raw offsets    --bootstrap B --topic T      (sum of the high watermarks)
//! ```
//!
//! Each run prints one `RESULT key=value ...` line on stdout; a failure
//! prints to stderr and exits non-zero.

use std::ffi::CStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use rdkafka::bindings as rd;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::ClientContext;

const PAYLOAD_LEN: usize = 100;

/// The payload every program sends: byte i is 'a' + (7 i mod 26).
fn payload() -> Vec<u8> {
    (0..PAYLOAD_LEN).map(|i| b'a' + ((7 * i) % 26) as u8).collect()
}

fn die(msg: impl std::fmt::Display) -> ! {
    eprintln!("bench-raw: {msg}");
    std::process::exit(2)
}

// ------------------------------------------------------------------ args

struct Args(Vec<String>);

impl Args {
    fn str(&self, name: &str) -> Option<&str> {
        self.0.windows(2).find(|w| w[0] == name).map(|w| w[1].as_str())
    }
    fn str_or<'a>(&'a self, name: &str, dflt: &'a str) -> &'a str {
        self.str(name).unwrap_or(dflt)
    }
    fn num<T: std::str::FromStr>(&self, name: &str, dflt: T) -> T {
        match self.str(name) {
            None => dflt,
            Some(v) => v.parse().unwrap_or_else(|_| die(format_args!("{name}: not a number: {v}"))),
        }
    }
    /// The `--set key=value` pairs, in order.
    fn sets(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut it = self.0.iter();
        while let Some(a) = it.next() {
            if a == "--set" {
                let kv = it.next().unwrap_or_else(|| die("--set needs key=value"));
                let (k, v) = kv.split_once('=').unwrap_or_else(|| die(format_args!("--set {kv}: not key=value")));
                out.push((k.to_owned(), v.to_owned()));
            }
        }
        out
    }
    fn config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", self.str("--bootstrap").unwrap_or_else(|| die("--bootstrap is required")));
        for (k, v) in self.sets() {
            c.set(k, v);
        }
        c
    }
}

fn cpu_seconds() -> f64 {
    // SAFETY: getrusage writes the struct we hand it and nothing else.
    let ru = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut ru);
        ru
    };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

// -------------------------------------------------------- delivery counts

/// Delivery reports counted by every producer of a run.
#[derive(Default)]
struct Counts {
    delivered: AtomicU64,
    failed: AtomicU64,
    first_error: Mutex<Option<String>>,
}

impl Counts {
    fn done(&self) -> u64 {
        self.delivered.load(Ordering::Acquire) + self.failed.load(Ordering::Acquire)
    }
    /// Waits (1 ms naps) until `n` reports are in: the end of a drained run.
    fn wait_for(&self, n: u64, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.done() < n {
            if Instant::now() > deadline {
                die(format_args!("{} of {n} delivery reports after {timeout:?}", self.done()));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    fn check(&self) {
        if let Some(e) = self.first_error.lock().unwrap().as_ref() {
            die(format_args!("{} messages failed; first: {e}", self.failed.load(Ordering::Acquire)));
        }
    }
}

struct CountingContext(Arc<Counts>);

impl ClientContext for CountingContext {}

impl ProducerContext for CountingContext {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => {
                self.0.delivered.fetch_add(1, Ordering::AcqRel);
            }
            Err((e, _)) => {
                self.0.first_error.lock().unwrap().get_or_insert_with(|| e.to_string());
                self.0.failed.fetch_add(1, Ordering::AcqRel);
            }
        }
    }
}

type Counting = ThreadedProducer<CountingContext>;

fn counting_producer(args: &Args, counts: &Arc<Counts>) -> Counting {
    args.config()
        .create_with_context(CountingContext(Arc::clone(counts)))
        .unwrap_or_else(|e| die(format_args!("creating a producer: {e}")))
}

/// Sends one message, retrying while librdkafka's queue is full. Returns
/// how many times the queue was full.
fn send<C: ProducerContext<DeliveryOpaque = ()>>(p: &ThreadedProducer<C>, topic: &str, payload: &[u8]) -> u64 {
    let mut record = BaseRecord::to(topic).payload(payload);
    let mut full = 0;
    loop {
        match p.send::<[u8], [u8]>(record) {
            Ok(()) => return full,
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                full += 1;
                record = back;
                std::thread::sleep(Duration::from_micros(200));
            }
            Err((e, _)) => die(format_args!("send: {e}")),
        }
    }
}

/// One message through each producer, waited for: connections, metadata and
/// producer ids are in place before the clock starts.
fn warm_up(producers: &[Counting], counts: &Counts, topic: &str, payload: &[u8]) -> u64 {
    for p in producers {
        send(p, topic, payload);
    }
    counts.wait_for(producers.len() as u64, Duration::from_secs(60));
    producers.len() as u64
}

// ------------------------------------------------------------ throughput

fn throughput(args: &Args) {
    let topic = args.str_or("--topic", "bench");
    let total: u64 = args.num("--messages", 100_000);
    let threads: u64 = args.num("--threads", 4);
    let n_producers: usize = args.num("--producers", 2);
    if threads == 0 || n_producers == 0 {
        die("--threads and --producers must be at least 1");
    }
    let payload = payload();
    let counts = Arc::new(Counts::default());
    let producers: Vec<Counting> = (0..n_producers).map(|_| counting_producer(args, &counts)).collect();
    let warmup = warm_up(&producers, &counts, topic, &payload);

    let queue_full = AtomicU64::new(0);
    let cpu0 = cpu_seconds();
    let t0 = Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads {
            let p = &producers[t as usize % n_producers];
            let n = total / threads + u64::from(t < total % threads);
            let (payload, queue_full) = (&payload, &queue_full);
            s.spawn(move || {
                let mut full = 0;
                for _ in 0..n {
                    full += send(p, topic, payload);
                }
                queue_full.fetch_add(full, Ordering::Relaxed);
            });
        }
    });
    let send_s = t0.elapsed().as_secs_f64();
    counts.wait_for(warmup + total, Duration::from_secs(600));
    let elapsed = t0.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu0;
    counts.check();
    drop(producers);
    println!(
        "RESULT bench=throughput impl=raw mode=threaded producers={n_producers} threads={threads} sent={total} \
         warmup={warmup} delivered={} queue_full={} elapsed_s={elapsed:.6} send_s={send_s:.6} cpu_s={cpu:.6}",
        counts.delivered.load(Ordering::Acquire) - warmup,
        queue_full.load(Ordering::Relaxed)
    );
}

// ---------------------------------------------------------- transactions

/// librdkafka's error object, freed after reading it.
fn take_error(e: *mut rd::rd_kafka_error_t) -> Result<(), String> {
    if e.is_null() {
        return Ok(());
    }
    // SAFETY: `e` is a live error librdkafka returned to us; we read its
    // string, copy it and destroy the error exactly once.
    let msg = unsafe {
        let s = CStr::from_ptr(rd::rd_kafka_error_string(e)).to_string_lossy().into_owned();
        rd::rd_kafka_error_destroy(e);
        s
    };
    Err(msg)
}

/// One transaction of `per_txn` messages: librdkafka's begin and commit
/// called directly (the producer's polling thread serves the reports).
fn transaction(p: &Counting, topic: &str, payload: &[u8], per_txn: usize) -> Result<(), String> {
    let rk = p.client().native_ptr();
    // SAFETY: `rk` is the live producer's handle for the whole call.
    take_error(unsafe { rd::rd_kafka_begin_transaction(rk) })?;
    for _ in 0..per_txn {
        send(p, topic, payload);
    }
    // SAFETY: as above; commit flushes and waits (60 s at most).
    take_error(unsafe { rd::rd_kafka_commit_transaction(rk, 60_000) })
}

fn txn(args: &Args) {
    let topic = args.str_or("--topic", "bench");
    let n_producers: usize = args.num("--producers", 1);
    let threads: usize = args.num("--threads", 4);
    let seconds: f64 = args.num("--seconds", 5.0);
    let per_txn: usize = args.num("--per-txn", 10);
    let prefix = args.str("--txn-prefix").unwrap_or_else(|| die("--txn-prefix is required"));
    let payload = payload();
    let counts = Arc::new(Counts::default());
    let producers: Vec<Mutex<Counting>> = (0..n_producers)
        .map(|i| {
            let mut config = args.config();
            config.set("transactional.id", format!("{prefix}-{i}"));
            let p: Counting = config
                .create_with_context(CountingContext(Arc::clone(&counts)))
                .unwrap_or_else(|e| die(format_args!("creating a producer: {e}")));
            p.init_transactions(Duration::from_secs(60)).unwrap_or_else(|e| die(format_args!("init_transactions: {e}")));
            transaction(&p, topic, &payload, per_txn).unwrap_or_else(|e| die(format_args!("warm-up transaction: {e}")));
            Mutex::new(p)
        })
        .collect();

    let committed = AtomicU64::new(0);
    let cpu0 = cpu_seconds();
    let t0 = Instant::now();
    let deadline = t0 + Duration::from_secs_f64(seconds);
    std::thread::scope(|s| {
        for t in 0..threads {
            // Thread t uses producer t mod K: one transaction at a time per producer.
            let p = &producers[t % n_producers];
            let (payload, committed) = (&payload, &committed);
            s.spawn(move || {
                while Instant::now() < deadline {
                    let p = p.lock().unwrap();
                    transaction(&p, topic, payload, per_txn).unwrap_or_else(|e| die(format_args!("transaction: {e}")));
                    committed.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
    });
    let elapsed = t0.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu0;
    counts.check();
    println!(
        "RESULT bench=txn impl=raw producers={n_producers} threads={threads} per_txn={per_txn} txns={} \
         warmup_txns={n_producers} failed=0 elapsed_s={elapsed:.6} cpu_s={cpu:.6}",
        committed.load(Ordering::Relaxed)
    );
}

// --------------------------------------------------------------- latency

/// Hands each delivery report to the one thread waiting for it: a slot and
/// a condition variable (no spinning: std's channels spin and yield before
/// they block, which on 2 cores steals time from librdkafka's threads).
#[derive(Default)]
struct Reply {
    slot: Mutex<Option<Result<(), String>>>,
    ready: Condvar,
}

impl Reply {
    fn wait(&self, timeout: Duration) -> Result<(), String> {
        let slot = self.slot.lock().unwrap();
        let (mut slot, _) = self.ready.wait_timeout_while(slot, timeout, |s| s.is_none()).unwrap();
        slot.take().unwrap_or_else(|| Err(format!("no delivery report after {timeout:?}")))
    }
}

struct ReplyContext(Arc<Reply>);

impl ClientContext for ReplyContext {}

impl ProducerContext for ReplyContext {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        let r = result.as_ref().map(|_| ()).map_err(|(e, _)| e.to_string());
        *self.0.slot.lock().unwrap() = Some(r);
        self.0.ready.notify_one();
    }
}

fn latency(args: &Args) {
    let topic = args.str_or("--topic", "bench");
    let n: usize = args.num("--messages", 1000);
    let warmup: usize = args.num("--warmup", 50);
    let payload = payload();
    let reply = Arc::new(Reply::default());
    let p: ThreadedProducer<ReplyContext> = args
        .config()
        .create_with_context(ReplyContext(Arc::clone(&reply)))
        .unwrap_or_else(|e| die(format_args!("creating a producer: {e}")));
    let mut lat = Vec::with_capacity(n);
    for i in 0..warmup + n {
        let t0 = Instant::now();
        send(&p, topic, &payload);
        reply.wait(Duration::from_secs(60)).unwrap_or_else(|e| die(format_args!("delivery failed: {e}")));
        if i >= warmup {
            lat.push(t0.elapsed().as_nanos() as u64);
        }
    }
    drop(p);
    lat.sort_unstable();
    let q = |q: f64| lat[((q * n as f64).ceil() as usize).clamp(1, n) - 1] as f64 / 1e3;
    let mean = lat.iter().sum::<u64>() as f64 / n as f64 / 1e3;
    println!(
        "RESULT bench=latency impl=raw sent={n} warmup={warmup} delivered={n} p50_us={:.1} p99_us={:.1} \
         mean_us={mean:.1} max_us={:.1}",
        q(0.50),
        q(0.99),
        lat[n - 1] as f64 / 1e3
    );
}

// ----------------------------------------------------------------- close

/// Time to close producers gracefully, all producers in parallel as wdpool
/// closes them: librdkafka's flush called directly (`flush_ms`: how fast the
/// broker acknowledges what is in flight), then the producer dropped, which
/// stops its polling thread (`close_ms`: flush and drop).
fn close(args: &Args) {
    let topic = args.str_or("--topic", "bench");
    let n_producers: usize = args.num("--producers", 2);
    let inflight: usize = args.num("--inflight", 0);
    let repeat: usize = args.num("--repeat", 3);
    let payload = payload();
    let (mut flush_times, mut close_times) = (Vec::new(), Vec::new());
    let mut warmup = 0;
    let mut undelivered = 0;
    for _ in 0..repeat {
        let counts = Arc::new(Counts::default());
        let producers: Vec<Counting> = (0..n_producers).map(|_| counting_producer(args, &counts)).collect();
        let w = warm_up(&producers, &counts, topic, &payload);
        warmup += w;
        for i in 0..inflight {
            send(&producers[i % n_producers], topic, &payload);
        }
        let t0 = Instant::now();
        let flushed: Vec<Duration> = std::thread::scope(|s| {
            let handles: Vec<_> = producers
                .into_iter()
                .map(|p| {
                    s.spawn(move || {
                        // SAFETY: the producer is alive until the drop below.
                        let err = unsafe { rd::rd_kafka_flush(p.client().native_ptr(), 60_000) };
                        if err != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
                            die(format_args!("rd_kafka_flush: {err:?}"));
                        }
                        let flushed = t0.elapsed();
                        drop(p);
                        flushed
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        close_times.push(t0.elapsed().as_secs_f64() * 1e3);
        flush_times.push(flushed.into_iter().max().unwrap_or_default().as_secs_f64() * 1e3);
        counts.check();
        undelivered += w + inflight as u64 - counts.delivered.load(Ordering::Acquire);
    }
    let median = |v: &[f64]| {
        let mut v = v.to_vec();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let all = |v: &[f64]| v.iter().map(|t| format!("{t:.3}")).collect::<Vec<_>>().join(",");
    println!(
        "RESULT bench=close impl=raw producers={n_producers} inflight={inflight} repeat={repeat} sent={} \
         warmup={warmup} delivered={} undelivered={undelivered} flush_ms={:.3} close_ms={:.3} flush_ms_all={} \
         close_ms_all={}",
        inflight * repeat,
        (inflight * repeat) as u64 - undelivered,
        median(&flush_times),
        median(&close_times),
        all(&flush_times),
        all(&close_times)
    );
    if undelivered > 0 {
        std::process::exit(1);
    }
}

// --------------------------------------------------------------- offsets

/// The sum of the topic's high watermarks: what the broker has stored.
fn offsets(args: &Args) {
    let topic = args.str_or("--topic", "bench");
    let p: ThreadedProducer<rdkafka::producer::DefaultProducerContext> =
        args.config().create().unwrap_or_else(|e| die(format_args!("creating a client: {e}")));
    let timeout = Duration::from_secs(30);
    let metadata = p.client().fetch_metadata(Some(topic), timeout).unwrap_or_else(|e| die(format_args!("metadata: {e}")));
    let t = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic && t.error().is_none())
        .unwrap_or_else(|| die(format_args!("topic {topic} not found")));
    let mut sum = 0i64;
    for part in t.partitions() {
        let (_, high) = p
            .client()
            .fetch_watermarks(topic, part.id(), timeout)
            .unwrap_or_else(|e| die(format_args!("watermarks of {topic}/{}: {e}", part.id())));
        sum += high;
    }
    println!("RESULT bench=offsets topic={topic} partitions={} high_sum={sum}", t.partitions().len());
}

fn main() {
    let argv: Vec<String> = std::env::args().collect();
    let args = Args(argv.clone());
    match argv.get(1).map(String::as_str) {
        Some("throughput") => throughput(&args),
        Some("txn") => txn(&args),
        Some("latency") => latency(&args),
        Some("close") => close(&args),
        Some("offsets") => offsets(&args),
        _ => die("usage: wdpool-bench-raw throughput|txn|latency|close|offsets [--options]"),
    }
}
