//! Configuration: `wdpool_config_set_*` with arbitrary keys and values (raw
//! bytes, NULLs, invalid UTF-8, librdkafka's real property names with
//! arbitrary values), in any order, from the configure callback of a new
//! pool whose options are arbitrary too; sometimes a producer is then
//! created from the result (forced to `deliver = false`: no network).
//!
//! Oracle: every setter's error is clear (a known code, a message; an
//! invalid property names its key), and `wdpool_pool_new` fails with the
//! first failed setter's code and message, else with
//! WDPOOL_CALLBACK_FAILED when the callback did not return WDPOOL_CB_OK,
//! else with WDPOOL_INVALID_ARGUMENT for a size outside 1..=WDPOOL_MAX_SIZE,
//! and succeeds otherwise.
#![no_main]

use std::ffi::c_void;
use std::ptr;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use wdpool::ffi::*;
use wdpool_fuzz::{call, call_maybe, OptStr, Outcome};

/// Real librdkafka producer properties, so values get past the key check.
/// Not `plugin.library.paths`: setting it loads shared libraries at once.
const KEYS: &[&str] = &[
    "bootstrap.servers",
    "metadata.broker.list",
    "client.id",
    "acks",
    "enable.idempotence",
    "transactional.id",
    "transaction.timeout.ms",
    "compression.type",
    "compression.level",
    "linger.ms",
    "batch.size",
    "batch.num.messages",
    "message.max.bytes",
    "message.timeout.ms",
    "queue.buffering.max.messages",
    "queue.buffering.max.kbytes",
    "partitioner",
    "retries",
    "retry.backoff.ms",
    "request.timeout.ms",
    "statistics.interval.ms",
    "security.protocol",
    "sasl.mechanisms",
    "sasl.username",
    "sasl.password",
    "ssl.endpoint.identification.algorithm",
    "socket.timeout.ms",
    "socket.keepalive.enable",
    "debug",
    "log_level",
    "api.version.request",
    "broker.address.family",
    "topic.metadata.refresh.interval.ms",
    "enable.gapless.guarantee",
    "sticky.partitioning.linger.ms",
    "max.in.flight.requests.per.connection",
    "client.dns.lookup",
    "allow.auto.create.topics",
];

#[derive(Arbitrary, Debug)]
enum Key {
    Raw(Option<Vec<u8>>),
    Known(u8),
}

#[derive(Arbitrary, Debug)]
enum Op {
    Kafka { key: Key, value: Option<Vec<u8>> },
    Deliver(bool),
    MaxWaitTimeout(u64),
    MaxPayloadSize(usize),
    Id(Option<Vec<u8>>),
    /// A setter called with a NULL config.
    NullConfig(u8),
}

#[derive(Arbitrary, Debug)]
struct Input {
    /// Pool size: 0 and WDPOOL_MAX_SIZE + 1 are refused; kept small
    /// otherwise (the callback runs once per slot).
    size: u8,
    ops: Vec<Op>,
    /// What the callback returns (WDPOOL_CB_OK = 1).
    returns: i32,
    /// Pass a NULL error out-parameter to the setters.
    null_err: bool,
    /// Create a producer from the configuration (deliver = false).
    create: bool,
}

struct Run<'a> {
    input: &'a Input,
    /// The first setter failure: the pool's creation must fail with it.
    first_failure: Option<Outcome>,
}

fn key_bytes(key: &Key) -> Option<Vec<u8>> {
    match key {
        Key::Raw(k) => k.clone(),
        Key::Known(i) => Some(KEYS[usize::from(*i) % KEYS.len()].as_bytes().to_vec()),
    }
}

fn apply(config: *mut wdpool_config, op: &Op, with_err: bool) -> Outcome {
    // SAFETY: `config` is the callback's (or NULL); strings are
    // NUL-terminated or NULL.
    unsafe {
        match op {
            Op::Kafka { key, value } => {
                let (key, value) = (OptStr::new(key_bytes(key).as_deref()), OptStr::new(value.as_deref()));
                let out = call_maybe(with_err, |e| wdpool_config_set_kafka(config, key.ptr(), value.ptr(), e));
                check_kafka(&out, &key, &value, with_err);
                out
            }
            Op::Deliver(d) => call_maybe(with_err, |e| wdpool_config_set_deliver(config, *d, e)),
            Op::MaxWaitTimeout(t) => {
                let out = call_maybe(with_err, |e| wdpool_config_set_max_wait_timeout(config, *t, e));
                assert_eq!(out.ok(), *t > 0, "{out:?}");
                out
            }
            Op::MaxPayloadSize(s) => {
                let out = call_maybe(with_err, |e| wdpool_config_set_max_payload_size(config, *s, e));
                assert_eq!(out.ok(), *s > 0, "{out:?}");
                out
            }
            Op::Id(id) => {
                let id = OptStr::new(id.as_deref());
                let out = call_maybe(with_err, |e| wdpool_config_set_id(config, id.ptr(), e));
                let valid = id.bytes().is_some_and(|b| !b.is_empty() && std::str::from_utf8(b).is_ok());
                assert_eq!(out.ok(), valid, "{out:?}");
                out
            }
            Op::NullConfig(which) => {
                let null = ptr::null_mut();
                let out = match which % 5 {
                    0 => call(|e| wdpool_config_set_kafka(null, c"acks".as_ptr(), c"1".as_ptr(), e)),
                    1 => call(|e| wdpool_config_set_deliver(null, false, e)),
                    2 => call(|e| wdpool_config_set_max_wait_timeout(null, 1, e)),
                    3 => call(|e| wdpool_config_set_max_payload_size(null, 1, e)),
                    _ => call(|e| wdpool_config_set_id(null, c"x".as_ptr(), e)),
                };
                assert_eq!(out.rc, wdpool_result::WDPOOL_NULL_PARAMETER, "{out:?}");
                // Not a setter failure of this config: it has nothing to
                // fail.
                Outcome { rc: wdpool_result::WDPOOL_OK, message: String::new() }
            }
        }
    }
}

/// A failed `wdpool_config_set_kafka` says why, naming the key.
fn check_kafka(out: &Outcome, key: &OptStr, value: &OptStr, with_err: bool) {
    let utf8 = |s: &OptStr| s.bytes().map(|b| std::str::from_utf8(b).is_ok());
    let expected = match (utf8(key), utf8(value)) {
        (None, _) | (Some(true), None) => Some(wdpool_result::WDPOOL_NULL_PARAMETER),
        (Some(false), _) | (Some(true), Some(false)) => Some(wdpool_result::WDPOOL_INVALID_ARGUMENT),
        (Some(true), Some(true)) => None,
    };
    match expected {
        Some(rc) => assert_eq!(out.rc, rc, "{out:?}"),
        None if out.ok() => {}
        None => {
            assert_eq!(out.rc, wdpool_result::WDPOOL_INVALID_CONFIG, "{out:?}");
            if with_err {
                let key = std::str::from_utf8(key.bytes().unwrap()).unwrap();
                assert!(out.message.contains(&format!("`{key}`")), "the error does not name {key:?}: {out:?}");
            }
        }
    }
}

unsafe extern "C" fn configure(user_data: *mut c_void, config: *mut wdpool_config, _index: usize) -> i32 {
    // SAFETY: `user_data` is the `Run` of this iteration, alive during the
    // pool's creation.
    let run = unsafe { &mut *user_data.cast::<Run<'_>>() };
    for op in run.input.ops.iter().take(32) {
        let out = apply(config, op, !run.input.null_err);
        if !out.ok() && run.first_failure.is_none() {
            run.first_failure = Some(out);
        }
    }
    if run.input.create {
        // SAFETY: the callback's config.
        assert!(call(|e| unsafe { wdpool_config_set_deliver(config, false, e) }).ok());
    }
    run.input.returns
}

fuzz_target!(|input: Input| {
    let size = match input.size {
        0 => 0,
        255 => WDPOOL_MAX_SIZE + 1,
        n => usize::from(n % 3) + 1,
    };
    let options = wdpool_options { size, timeout_ms: 0 };
    let mut run = Run { input: &input, first_failure: None };
    let mut pool = ptr::null_mut();
    let user_data = (&mut run as *mut Run<'_>).cast::<c_void>();
    // SAFETY: valid options, callback and out-parameters.
    let made = call(|e| unsafe { wdpool_pool_new(&options, Some(configure), user_data, &mut pool, e) });
    let valid_size = (1..=WDPOOL_MAX_SIZE).contains(&size);
    match (&run.first_failure, valid_size) {
        (_, false) => assert_eq!(made.rc, wdpool_result::WDPOOL_INVALID_ARGUMENT, "size {size}: {made:?}"),
        (Some(failure), true) => {
            assert_eq!(made.rc, failure.rc, "{made:?} after {failure:?}");
            if !input.null_err {
                assert!(made.message.contains(&failure.message), "{made:?} hides {failure:?}");
            }
        }
        (None, true) if input.returns != WDPOOL_CB_OK => {
            assert_eq!(made.rc, wdpool_result::WDPOOL_CALLBACK_FAILED, "{made:?}")
        }
        (None, true) => assert!(made.ok(), "{made:?}"),
    }
    if !made.ok() {
        assert!(pool.is_null(), "a pool was returned with {made:?}");
        return;
    }
    if input.create {
        let mut producer = ptr::null_mut();
        // SAFETY: a live pool.
        let out = call(|e| unsafe { wdpool_pool_checkout(pool, WDPOOL_OWNER_NONE, 0, &mut producer, e) });
        assert!(out.ok(), "a deliver = false producer is made at once: {out:?}");
        // SAFETY: the lease just made.
        assert!(call(|e| unsafe { wdpool_producer_checkin(producer, e) }).ok());
    }
    // SAFETY: a live pool, closed then freed once.
    unsafe {
        assert!(call(|e| wdpool_pool_close(pool, true, ptr::null_mut(), e)).ok());
        wdpool_pool_free(pool);
    }
});
