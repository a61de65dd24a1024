//! The C load test (tests/c/real_load.c) against a REAL Kafka broker, run
//! under AddressSanitizer/LeakSanitizer/UBSan, then everything it produced
//! verified again from Rust.
//!
//! Needs WDPOOL_KAFKA_BOOTSTRAP (the broker), WDPOOL_REAL_LOAD (the compiled
//! `target/c/real_load`) and the `kafka_read` example (built by `cargo test`
//! or `cargo build --example kafka_read`). Every one missing is a failure,
//! never a skip:
//!
//!     cargo build --example kafka_read
//!     cc -std=c11 -Wall -Wextra -Wpedantic -Werror -g -fsanitize=address,undefined \
//!        -fno-omit-frame-pointer -pthread -I include tests/c/real_load.c -L target/debug \
//!        -lwdpool -Wl,-rpath,$PWD/target/debug -o target/c/real_load
//!     ln -sfn libwdpool.so target/debug/libwdpool.so.1    # the SONAME it asks for
//!     WDPOOL_KAFKA_BOOTSTRAP=$KAFKA_BOOTSTRAP WDPOOL_REAL_LOAD=target/c/real_load \
//!        cargo test --test real_c_load -- --nocapture
//!
//! or `make test-real`.

mod common;
mod real_common;

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use real_common::*;

const THREADS: usize = 16;
const PER_THREAD: usize = 2000;
const TOTAL: usize = THREADS * PER_THREAD;
/// The C program: producing 32,000 messages and reading them back.
const RUN_DEADLINE: Duration = Duration::from_secs(240);
const READ: Duration = Duration::from_secs(60);

fn repo() -> PathBuf {
    repo_root()
}

/// `WDPOOL_REAL_LOAD`, made absolute against the repository; panics when it
/// is unset or not a file.
fn real_load_binary() -> PathBuf {
    let raw = std::env::var_os("WDPOOL_REAL_LOAD").filter(|v| !v.is_empty()).unwrap_or_else(|| {
        panic!(
            "WDPOOL_REAL_LOAD is not set: it must name the compiled C load test (target/c/real_load). \
             `make test-real` builds it and sets it; by hand: cc -std=c11 -Wall -Wextra -Wpedantic -Werror -g \
             -fsanitize=address,undefined -fno-omit-frame-pointer -pthread -I include tests/c/real_load.c \
             -L target/debug -lwdpool -Wl,-rpath,$PWD/target/debug -o target/c/real_load \
             && ln -sfn libwdpool.so target/debug/libwdpool.so.1"
        )
    });
    let path = repo().join(raw);
    assert!(path.is_file(), "WDPOOL_REAL_LOAD={} does not exist (compile tests/c/real_load.c first)", path.display());
    path
}

/// Runs `cmd` to its end, killing it after `deadline`. Returns (exit code,
/// stdout, stderr).
fn run_with_deadline(mut cmd: Command, deadline: Duration) -> (Option<i32>, String, String) {
    use std::io::Read;
    use std::process::Stdio;
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("starting real_load");
    // Drain both pipes on threads so a chatty child never blocks.
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out_t = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let err_t = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let until = Instant::now() + deadline;
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for real_load") {
            break Some(status);
        }
        if Instant::now() >= until {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let (stdout, stderr) = (out_t.join().unwrap(), err_t.join().unwrap());
    match status {
        Some(s) => (s.code(), stdout, stderr),
        None => panic!("real_load did not finish within {deadline:?} (killed)\n--- stdout\n{stdout}\n--- stderr\n{stderr}"),
    }
}

#[test]
fn c_load_sixteen_threads_on_a_pool_of_four_against_a_real_broker() {
    let bootstrap = bootstrap();
    let binary = real_load_binary();
    let kafka_read = kafka_read_binary();
    let topic = unique("c-load");
    create_topics(&bootstrap, &[&topic], 3);

    let mut cmd = Command::new(&binary);
    cmd.arg(&topic)
        .current_dir(repo())
        .env("WDPOOL_BROKERS", &bootstrap)
        .env("WDPOOL_KAFKA_READ", &kafka_read)
        .env("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=1")
        .env("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1")
        .env(
            "LSAN_OPTIONS",
            format!("suppressions={}:print_suppressions=0", repo().join("tests/c/lsan.supp").display()),
        );
    let started = Instant::now();
    let (code, stdout, stderr) = run_with_deadline(cmd, RUN_DEADLINE);
    let took = started.elapsed();
    eprintln!("real_load ({}) took {took:?}\n--- stdout\n{stdout}--- stderr\n{stderr}", binary.display());
    assert_eq!(code, Some(0), "real_load failed (exit {code:?})\n--- stdout\n{stdout}\n--- stderr\n{stderr}");
    assert!(
        stdout.lines().any(|l| l.starts_with("real_load: ") && l.ends_with(" passed, 0 failed")),
        "real_load printed no clean summary:\n{stdout}"
    );
    assert!(!stderr.contains("ERROR: AddressSanitizer") && !stderr.contains("runtime error:"), "sanitizer report:\n{stderr}");

    // Independently, from Rust.
    let records = consume_at_least(&bootstrap, &topic, Isolation::ReadUncommitted, TOTAL, READ);
    let expected: Vec<String> =
        (0..THREADS).flat_map(|t| (0..PER_THREAD).map(move |s| format!("t{t}-{s}"))).collect();
    assert_exactly_once(&records, &expected, "C load topic");

    // Per key: one partition, offsets increasing with the sequence number.
    let mut by_key: HashMap<String, Vec<(usize, i32, i64)>> = HashMap::new();
    for r in &records {
        let payload = r.payload_str();
        let (t, s) = payload.split_once('-').expect("payload t<thread>-<seq>");
        let key = std::str::from_utf8(r.key.as_deref().expect("every record has a key")).unwrap();
        assert_eq!(key, t, "{payload}: key");
        by_key.entry(key.to_owned()).or_default().push((s.parse().unwrap(), r.partition, r.offset));
    }
    assert_eq!(by_key.len(), THREADS);
    let mut partitions_used = std::collections::BTreeSet::new();
    for (key, mut v) in by_key {
        v.sort_unstable();
        assert_eq!(v.len(), PER_THREAD, "{key}");
        let partition = v[0].1;
        partitions_used.insert(partition);
        for w in v.windows(2) {
            assert_eq!(w[1].1, partition, "{key}: seq {} on partition {} (seq 0 on {partition})", w[1].0, w[1].1);
            assert!(w[1].2 > w[0].2, "{key}: seq {} at offset {} after seq {} at {}", w[1].0, w[1].2, w[0].0, w[0].2);
        }
    }
    eprintln!("16 keys over partitions {partitions_used:?}; whole test {:?}", started.elapsed());
}
