//! Message validation through the C ABI: every field of `wdpool_message`
//! (topic, payload, key, partition key, partition, timestamp, headers),
//! NULL pointers with lengths included, produced one at a time or many at
//! once, sync and async, to `deliver = false` producers (one plain with a
//! 16-byte `max_payload_size`, one transactional with 1000 bytes).
//!
//! The oracle is WaterDrop's contract written again here, independently of
//! src/kafka/message.rs: a call succeeds exactly when every message is
//! valid; otherwise it returns WDPOOL_INVALID_MESSAGE naming a field (and,
//! for several messages, the index) that really is invalid. A success gives
//! one sane report per message.
#![no_main]

use std::ffi::{c_void, CStr};
use std::ptr;
use std::sync::OnceLock;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use wdpool::ffi::*;
use wdpool_fuzz::{call, How, OptStr};

const MAX_TOPIC_LEN: usize = 249;
const PLAIN_MAX_PAYLOAD: usize = 16;
const TXN_MAX_PAYLOAD: usize = 1000;

#[derive(Arbitrary, Debug)]
enum Bytes {
    /// `data` NULL, `len` 0.
    Absent,
    /// `data` NULL with a length: refused.
    NullWithLen(u16),
    Given(Vec<u8>),
}

#[derive(Arbitrary, Debug)]
struct Header {
    key: Option<Vec<u8>>,
    value: Bytes,
}

#[derive(Arbitrary, Debug)]
enum Topic {
    Null,
    Raw(Vec<u8>),
    /// A valid name this long (1..=255 characters: beyond 249 is refused).
    Long(u8),
}

#[derive(Arbitrary, Debug)]
struct Msg {
    topic: Topic,
    payload: Bytes,
    key: Bytes,
    partition_key: Bytes,
    partition: i32,
    timestamp_ms: i64,
    headers: Vec<Header>,
    /// `headers` NULL with this `headers_len`.
    null_headers: Option<u8>,
}

#[derive(Arbitrary, Debug)]
struct Input {
    transactional: bool,
    how: How,
    messages: Vec<Msg>,
}

/// The C view of one message and the buffers it points into.
struct Built {
    topic: OptStr,
    header_keys: Vec<OptStr>,
    headers: Vec<wdpool_header>,
    message: wdpool_message,
}

fn bytes_of(b: &Bytes) -> wdpool_bytes {
    match b {
        Bytes::Absent => wdpool_bytes { data: ptr::null(), len: 0 },
        Bytes::NullWithLen(n) => wdpool_bytes { data: ptr::null(), len: usize::from(*n) },
        // An empty Vec's pointer is dangling but not NULL: an empty key.
        Bytes::Given(v) => wdpool_bytes { data: v.as_ptr(), len: v.len() },
    }
}

fn build(m: &Msg) -> Box<Built> {
    let topic = match &m.topic {
        Topic::Null => OptStr::new(None),
        Topic::Raw(b) => OptStr::new(Some(b)),
        Topic::Long(n) => OptStr::new(Some("t".repeat(usize::from(*n).max(1)).as_bytes())),
    };
    let header_keys: Vec<OptStr> = m.headers.iter().map(|h| OptStr::new(h.key.as_deref())).collect();
    let headers = m
        .headers
        .iter()
        .zip(&header_keys)
        .map(|(h, k)| wdpool_header { key: k.ptr(), value: bytes_of(&h.value) })
        .collect();
    let mut b = Box::new(Built { topic, header_keys, headers, message: unsafe { std::mem::zeroed() } });
    let (headers, headers_len) = match m.null_headers {
        Some(n) => (ptr::null(), usize::from(n)),
        None if b.headers.is_empty() => (ptr::null(), 0),
        None => (b.headers.as_ptr(), b.headers.len()),
    };
    b.message = wdpool_message {
        topic: b.topic.ptr(),
        payload: bytes_of(&m.payload),
        key: bytes_of(&m.key),
        partition_key: bytes_of(&m.partition_key),
        partition: m.partition,
        timestamp_ms: m.timestamp_ms,
        headers,
        headers_len,
    };
    debug_assert_eq!(b.header_keys.len(), b.headers.len());
    b
}

/// The fields of `m` that WaterDrop's contract refuses.
fn invalid_fields(m: &Msg, built: &Built, max_payload: usize) -> Vec<String> {
    let mut bad = Vec::new();
    match built.topic.bytes().map(std::str::from_utf8) {
        Some(Ok(t))
            if !t.is_empty()
                && t.len() <= MAX_TOPIC_LEN
                && t.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')) => {}
        _ => bad.push("topic".to_owned()),
    }
    let null_with_len = |b: &Bytes| matches!(b, Bytes::NullWithLen(n) if *n != 0);
    let empty = |b: &Bytes| matches!(b, Bytes::Given(v) if v.is_empty());
    if null_with_len(&m.payload) || matches!(&m.payload, Bytes::Given(v) if v.len() > max_payload) {
        bad.push("payload".to_owned());
    }
    if null_with_len(&m.key) || empty(&m.key) {
        bad.push("key".to_owned());
    }
    if null_with_len(&m.partition_key) || empty(&m.partition_key) {
        bad.push("partition_key".to_owned());
    }
    if m.partition < -1 {
        bad.push("partition".to_owned());
    }
    if m.timestamp_ms < 0 {
        bad.push("timestamp".to_owned());
    }
    match m.null_headers {
        Some(n) if n > 0 => bad.push("headers".to_owned()),
        Some(_) => {}
        None => {
            for (i, (h, k)) in m.headers.iter().zip(&built.header_keys).enumerate() {
                if !k.bytes().is_some_and(|k| std::str::from_utf8(k).is_ok()) {
                    bad.push(format!("headers[{i}].key"));
                }
                if null_with_len(&h.value) {
                    bad.push(format!("headers[{i}].value"));
                }
            }
        }
    }
    bad
}

struct Producers {
    plain: usize,
    transactional: usize,
}

unsafe extern "C" fn configure(_: *mut c_void, config: *mut wdpool_config, index: usize) -> i32 {
    let ok = |o: wdpool_fuzz::Outcome| o.ok();
    let max = if index == 0 { PLAIN_MAX_PAYLOAD } else { TXN_MAX_PAYLOAD };
    let fine = ok(call(|e| unsafe { wdpool_config_set_deliver(config, false, e) }))
        && ok(call(|e| unsafe { wdpool_config_set_max_payload_size(config, max, e) }))
        && (index == 0
            || ok(call(|e| unsafe { wdpool_config_set_kafka(config, c"transactional.id".as_ptr(), c"fuzz-message".as_ptr(), e) })));
    if fine {
        WDPOOL_CB_OK
    } else {
        0
    }
}

/// Two leases held for the process's life, found by what they are.
fn producers() -> &'static Producers {
    static PRODUCERS: OnceLock<Producers> = OnceLock::new();
    PRODUCERS.get_or_init(|| {
        let options = wdpool_options { size: 2, timeout_ms: 1000 };
        let mut pool = ptr::null_mut();
        let made = call(|e| unsafe { wdpool_pool_new(&options, Some(configure), ptr::null_mut(), &mut pool, e) });
        assert!(made.ok(), "{made:?}");
        let (mut plain, mut transactional) = (0, 0);
        for owner in [1, 2] {
            let mut p = ptr::null_mut();
            let out = call(|e| unsafe { wdpool_pool_checkout(pool, owner, 1000, &mut p, e) });
            assert!(out.ok(), "{out:?}");
            let mut info = wdpool_producer_info::default();
            assert!(call(|e| unsafe { wdpool_producer_get_info(p, &mut info, e) }).ok());
            if info.transactional {
                transactional = p as usize;
            } else {
                plain = p as usize;
            }
        }
        assert!(plain != 0 && transactional != 0);
        Producers { plain, transactional }
    })
}

fn check_report(r: &wdpool_report, m: &wdpool_message) {
    assert_eq!(r.error_code, 0, "deliver = false never fails a valid message");
    assert_eq!(r.partition, m.partition.max(0));
    assert!(r.offset >= 0);
    if m.timestamp_ms > 0 {
        assert_eq!(r.timestamp_ms, m.timestamp_ms);
    } else {
        assert!(r.timestamp_ms > 0);
    }
    assert!(!r.topic.is_null());
    // SAFETY: the report's topic is NUL-terminated, valid for this call.
    let topic = unsafe { CStr::from_ptr(r.topic) };
    // SAFETY: a valid message has a non-NULL topic.
    assert_eq!(topic, unsafe { CStr::from_ptr(m.topic) });
}

fn check_delivery(delivery: *mut wdpool_delivery, messages: &[wdpool_message]) {
    // SAFETY: a live delivery handle from the call just made.
    unsafe {
        assert_eq!(wdpool_delivery_count(delivery), messages.len());
        assert!(call(|e| wdpool_delivery_wait(delivery, 0, e)).ok(), "deliver = false reports at once");
        assert_eq!(wdpool_delivery_pending(delivery), 0);
        for (i, m) in messages.iter().enumerate() {
            let mut r: wdpool_report = std::mem::zeroed();
            assert!(call(|e| wdpool_delivery_report(delivery, i, &mut r, e)).ok());
            check_report(&r, m);
        }
        let mut r: wdpool_report = std::mem::zeroed();
        let past = call(|e| wdpool_delivery_report(delivery, messages.len(), &mut r, e));
        assert_eq!(past.rc, wdpool_result::WDPOOL_INVALID_ARGUMENT, "{past:?}");
        wdpool_delivery_free(delivery);
    }
}

fuzz_target!(|input: Input| {
    let producers = producers();
    let (producer, max_payload) = if input.transactional {
        (producers.transactional, TXN_MAX_PAYLOAD)
    } else {
        (producers.plain, PLAIN_MAX_PAYLOAD)
    };
    let producer = producer as *mut wdpool_producer;
    let msgs: Vec<&Msg> = input.messages.iter().take(8).collect();
    let (how, msgs) = match (input.how, msgs.len()) {
        (How::Sync | How::Async, 0) => return,
        (How::Sync | How::Async, _) => (input.how, &msgs[..1]),
        _ => (input.how, &msgs[..]),
    };
    let built: Vec<Box<Built>> = msgs.iter().map(|m| build(m)).collect();
    let c_messages: Vec<wdpool_message> = built.iter().map(|b| b.message).collect();
    let invalid: Vec<(usize, Vec<String>)> = msgs
        .iter()
        .zip(&built)
        .map(|(m, b)| invalid_fields(m, b, max_payload))
        .enumerate()
        .filter(|(_, f)| !f.is_empty())
        .collect();

    let mut reports = vec![unsafe { std::mem::zeroed::<wdpool_report>() }; c_messages.len()];
    let mut delivery = ptr::null_mut();
    let n = c_messages.len();
    // SAFETY: every pointer in the messages is NULL or valid for its length.
    let outcome = unsafe {
        match how {
            How::Sync => call(|e| wdpool_producer_produce_sync(producer, &c_messages[0], 50, &mut reports[0], e)),
            How::Async => call(|e| wdpool_producer_produce_async(producer, &c_messages[0], &mut delivery, e)),
            How::ManySync => call(|e| wdpool_producer_produce_many_sync(producer, c_messages.as_ptr(), n, 50, reports.as_mut_ptr(), e)),
            How::ManyAsync => call(|e| wdpool_producer_produce_many_async(producer, c_messages.as_ptr(), n, &mut delivery, e)),
        }
    };

    if invalid.is_empty() {
        assert!(outcome.ok(), "a valid message was refused: {outcome:?}\n{msgs:?}");
        match how {
            How::Sync | How::ManySync => reports.iter().zip(&c_messages).for_each(|(r, m)| check_report(r, m)),
            How::Async | How::ManyAsync => check_delivery(delivery, &c_messages),
        }
        return;
    }
    assert_eq!(outcome.rc, wdpool_result::WDPOOL_INVALID_MESSAGE, "{outcome:?}\ninvalid: {invalid:?}\n{msgs:?}");
    assert!(delivery.is_null(), "a delivery was returned for a refused call");
    // "[message <i>: ]invalid message: <field> <why>"
    let (index, rest) = match outcome.message.strip_prefix("message ") {
        Some(rest) if n > 1 => {
            let (i, rest) = rest.split_once(": ").expect("message <i>: ...");
            (i.parse::<usize>().expect("an index"), rest)
        }
        _ => (0, outcome.message.as_str()),
    };
    let field = rest
        .strip_prefix("invalid message: ")
        .and_then(|r| r.split(' ').next())
        .unwrap_or_else(|| panic!("no field named: {}", outcome.message));
    assert!(
        invalid.iter().any(|(i, fields)| *i == index && fields.iter().any(|f| f == field)),
        "the error names {field} of message {index}, which is valid: {}\ninvalid: {invalid:?}",
        outcome.message
    );
});
