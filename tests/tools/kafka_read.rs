//! kafka_read: reads a topic (every partition, from the beginning) to its
//! end with a plain rdkafka consumer and prints one line per record:
//!
//!     partition<TAB>offset<TAB>key-hex-or-"-"<TAB>payload-hex-or-"-"<TAB>timestamp-ms-or-"-"
//!
//! in consumption order (per partition, offsets increase). The consumer
//! helper used by the C programs and the Rust tests alike (the reading logic
//! is tests/common's `read_until`).
//!
//!     kafka_read --bootstrap B --topic T [--isolation read_committed|read_uncommitted]
//!                [--expect N] [--timeout-ms M] [--config-file F]
//!
//! Stops once every partition reported its end and at least N records
//! (default 0) were read. Exit status: 0 done; 1 the end or the expected
//! count was not reached within the timeout (default 30000 ms; what was read
//! is still printed); 2 bad usage; 3 the consumer failed. A one-line summary
//! goes to stderr. `--config-file`: librdkafka properties (`key=value`
//! lines, as `scripts/kafka.sh start --secure` writes them) for a secured
//! broker; `--bootstrap` wins over a `bootstrap.servers` in it.

#[path = "../common/mod.rs"]
mod common;

use std::io::Write;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use common::{load_properties, read_until, use_client_properties, Isolation, Record};

const USAGE: &str = "usage: kafka_read --bootstrap B --topic T [--isolation read_committed|read_uncommitted] \
                     [--expect N] [--timeout-ms M] [--config-file F]";

struct Args {
    bootstrap: String,
    topic: String,
    isolation: Isolation,
    expect: usize,
    timeout: Duration,
    config_file: Option<std::path::PathBuf>,
}

fn parse_args() -> Result<Args, String> {
    let mut bootstrap = None;
    let mut topic = None;
    let mut isolation = Isolation::ReadCommitted;
    let mut expect = 0usize;
    let mut timeout = Duration::from_millis(30_000);
    let mut config_file = None;
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "-h" || flag == "--help" {
            return Err(String::new());
        }
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--bootstrap" => bootstrap = Some(value),
            "--topic" => topic = Some(value),
            "--isolation" => {
                isolation = match value.as_str() {
                    "read_committed" => Isolation::ReadCommitted,
                    "read_uncommitted" => Isolation::ReadUncommitted,
                    other => return Err(format!("--isolation: unknown level {other:?}")),
                }
            }
            "--expect" => expect = value.parse().map_err(|e| format!("--expect {value:?}: {e}"))?,
            "--timeout-ms" => {
                let ms: u64 = value.parse().map_err(|e| format!("--timeout-ms {value:?}: {e}"))?;
                timeout = Duration::from_millis(ms);
            }
            "--config-file" => config_file = Some(std::path::PathBuf::from(value)),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(Args {
        bootstrap: bootstrap.filter(|b| !b.is_empty()).ok_or("--bootstrap is required")?,
        topic: topic.filter(|t| !t.is_empty()).ok_or("--topic is required")?,
        isolation,
        expect,
        timeout,
        config_file,
    })
}

fn hex_or_dash(bytes: Option<&[u8]>) -> String {
    match bytes {
        None => "-".to_owned(),
        Some(b) => {
            let mut s = String::with_capacity(b.len() * 2);
            for byte in b {
                s.push_str(&format!("{byte:02x}"));
            }
            s
        }
    }
}

fn line(r: &Record) -> String {
    let ts = r.timestamp_ms.map_or_else(|| "-".to_owned(), |t| t.to_string());
    format!(
        "{}\t{}\t{}\t{}\t{}\n",
        r.partition,
        r.offset,
        hex_or_dash(r.key.as_deref()),
        hex_or_dash(r.payload.as_deref()),
        ts
    )
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(why) => {
            if !why.is_empty() {
                eprintln!("kafka_read: {why}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let started = Instant::now();
    let expect = args.expect;
    // read_until panics when the consumer fails or the topic never shows up.
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        if let Some(f) = &args.config_file {
            use_client_properties(load_properties(f));
        }
        read_until(&args.bootstrap, &args.topic, args.isolation, args.timeout, |records, at_end| {
            at_end && records.len() >= expect
        })
    }));
    let (records, finished) = match outcome {
        Ok(r) => r,
        Err(_) => {
            eprintln!("kafka_read: reading {} failed (see the panic above)", args.topic);
            return ExitCode::from(3);
        }
    };

    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for r in &records {
        if let Err(e) = out.write_all(line(r).as_bytes()) {
            eprintln!("kafka_read: writing stdout: {e}");
            return ExitCode::from(3);
        }
    }
    if let Err(e) = out.flush() {
        eprintln!("kafka_read: writing stdout: {e}");
        return ExitCode::from(3);
    }
    drop(out);

    eprintln!(
        "kafka_read: {} records from {} ({}) in {} ms{}",
        records.len(),
        args.topic,
        args.isolation.as_str(),
        started.elapsed().as_millis(),
        if finished {
            String::new()
        } else {
            format!(
                "; did NOT reach the end of every partition with at least {expect} records within {} ms",
                args.timeout.as_millis()
            )
        }
    );
    if finished {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
