//! `wdpool_message`: what the caller wants produced, borrowed for the call.
//! librdkafka copies key, payload and headers, so the caller may free its
//! buffers as soon as the produce call returns.

use std::ffi::c_char;

use super::utf8;
use crate::error::{Error, ErrorKind, Result};
use crate::kafka::message::{MAX_TOPIC_LEN, TOPIC_BYTE};
use crate::kafka::{Header, Message};

/// A borrowed byte range. `data` may be NULL only when `len` is 0; what NULL
/// means depends on the field (no key, a tombstone payload, ...).
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct wdpool_bytes {
    pub data: *const u8,
    pub len: usize,
}

/// One message header. Several headers may share a key.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct wdpool_header {
    /// NUL-terminated UTF-8; required.
    pub key: *const c_char,
    /// The value's bytes; `data` NULL is a header with a null value.
    pub value: wdpool_bytes,
}

/// A message to produce. Initialise it with `wdpool_message_init` (which
/// sets `partition` to WDPOOL_PARTITION_ANY); a zeroed message would target
/// partition 0. Nothing in it is kept after the produce call returns.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct wdpool_message {
    /// NUL-terminated UTF-8; required; letters, digits, '_', '-', '.'.
    pub topic: *const c_char,
    /// `data` NULL: a tombstone (no payload). At most the producer's
    /// `max_payload_size` bytes.
    pub payload: wdpool_bytes,
    /// `data` NULL: no key. When given it must not be empty.
    pub key: wdpool_bytes,
    /// `data` NULL: none. When given (not empty), the partition is chosen
    /// from it by the producer's `partitioner`, without setting the key.
    pub partition_key: wdpool_bytes,
    /// WDPOOL_PARTITION_ANY (-1) or a partition number.
    pub partition: i32,
    /// Milliseconds since the epoch; 0: the time of producing.
    pub timestamp_ms: i64,
    /// `headers_len` headers, or NULL when `headers_len` is 0.
    pub headers: *const wdpool_header,
    pub headers_len: usize,
}

/// "Any partition": the partitioner chooses.
pub const WDPOOL_PARTITION_ANY: i32 = -1;

/// Resets `*message` to an empty message: every pointer NULL, lengths 0,
/// `partition` WDPOOL_PARTITION_ANY, `timestamp_ms` 0. NULL does nothing.
///
/// Blocks: never. Calls back: nothing. Thread: any.
#[no_mangle]
pub unsafe extern "C" fn wdpool_message_init(message: *mut wdpool_message) {
    if message.is_null() {
        return;
    }
    let empty = wdpool_bytes { data: std::ptr::null(), len: 0 };
    let value = wdpool_message {
        topic: std::ptr::null(),
        payload: empty,
        key: empty,
        partition_key: empty,
        partition: WDPOOL_PARTITION_ANY,
        timestamp_ms: 0,
        headers: std::ptr::null(),
        headers_len: 0,
    };
    // SAFETY: non-NULL, and the caller passes a writable message.
    unsafe { message.write(value) };
}

/// # Safety
/// `b.data` is NULL or valid for `b.len` bytes for `'a`.
unsafe fn optional_bytes<'a>(b: wdpool_bytes, field: &str) -> Result<Option<&'a [u8]>> {
    if b.data.is_null() {
        if b.len != 0 {
            return Err(Error::invalid_message(field, format_args!("data is NULL but len is {}", b.len)));
        }
        return Ok(None);
    }
    // SAFETY: not NULL, and valid for `len` bytes as promised by the caller.
    Ok(Some(unsafe { std::slice::from_raw_parts(b.data, b.len) }))
}

/// Borrows a C message as a Rust one.
///
/// # Safety
/// Every pointer in `m` is NULL or valid as documented on `wdpool_message`.
pub(crate) unsafe fn borrow<'a>(m: &'a wdpool_message) -> Result<Message<'a>> {
    // SAFETY: every pointer of `m` is NULL or valid, as promised by the
    // caller.
    let topic = unsafe { topic_of(m.topic) }?;
    // SAFETY: as above.
    let payload = unsafe { optional_bytes(m.payload, "payload") }?;
    let mut message = Message::new(topic, payload);
    // SAFETY: as above.
    message.key = unsafe { optional_bytes(m.key, "key") }?;
    // SAFETY: as above.
    message.partition_key = unsafe { optional_bytes(m.partition_key, "partition_key") }?;
    message.partition = m.partition;
    message.timestamp_ms = (m.timestamp_ms != 0).then_some(m.timestamp_ms);
    if m.headers_len > 0 {
        if m.headers.is_null() {
            return Err(Error::invalid_message("headers", format_args!("is NULL but headers_len is {}", m.headers_len)));
        }
        // SAFETY: the caller passes `headers_len` readable headers.
        let headers = unsafe { std::slice::from_raw_parts(m.headers, m.headers_len) };
        message.headers = headers
            .iter()
            .enumerate()
            .map(|(i, h)| {
                // SAFETY: each header's pointers are NULL or valid, as
                // promised by the caller.
                let key = unsafe { utf8(h.key, &format!("headers[{i}].key")) }.map_err(as_message_error)?;
                // SAFETY: as above.
                let value = unsafe { optional_bytes(h.value, &format!("headers[{i}].value")) }?;
                Ok(Header { key, value })
            })
            .collect::<Result<_>>()?;
    }
    Ok(message)
}

/// The topic name at `ptr`. A valid name (ASCII letters, digits, '_', '-',
/// '.', at most `MAX_TOPIC_LEN` bytes) is read in one pass, which also
/// proves it UTF-8; anything else takes `utf8`, and an invalid name is
/// refused by the message's validation, naming what is wrong.
///
/// # Safety
/// `ptr` is NULL or points to a NUL-terminated string valid for `'a`.
#[inline]
unsafe fn topic_of<'a>(ptr: *const c_char) -> Result<&'a str> {
    if !ptr.is_null() {
        let mut len = 0;
        // SAFETY: reads stop at the terminating NUL (never allowed in a
        // name), which the caller promises.
        while len <= MAX_TOPIC_LEN && TOPIC_BYTE[unsafe { *ptr.cast::<u8>().add(len) } as usize] {
            len += 1;
        }
        // SAFETY: `len` bytes were read above.
        if len <= MAX_TOPIC_LEN && unsafe { *ptr.add(len) } == 0 {
            // SAFETY: `len` readable ASCII bytes, valid for `'a`.
            return Ok(unsafe { std::str::from_utf8_unchecked(std::slice::from_raw_parts(ptr.cast::<u8>(), len)) });
        }
    }
    // SAFETY: as promised by the caller.
    unsafe { utf8(ptr, "topic") }.map_err(as_message_error)
}

/// A missing or malformed field of a message is an invalid message.
fn as_message_error(e: Error) -> Error {
    Error { kind: ErrorKind::InvalidMessage, message: format!("invalid message: {}", e.message), ..e }
}

/// Borrows `count` C messages, naming the index of a bad one.
///
/// # Safety
/// `messages` is valid for `count` messages, each as for [`borrow`].
pub(crate) unsafe fn borrow_many<'a>(messages: *const wdpool_message, count: usize) -> Result<Vec<Message<'a>>> {
    if count == 0 {
        return Ok(Vec::new());
    }
    if messages.is_null() {
        return Err(super::null("messages"));
    }
    // SAFETY: as promised by the caller.
    let messages = unsafe { std::slice::from_raw_parts(messages, count) };
    messages
        .iter()
        .enumerate()
        // SAFETY: each message is valid as promised by the caller.
        .map(|(i, m)| unsafe { borrow(m) }.map_err(|e| if count > 1 { e.prefixed(format_args!("message {i}")) } else { e }))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CString;

    fn message(topic: *const c_char) -> wdpool_message {
        let mut m = std::mem::MaybeUninit::uninit();
        // SAFETY: initialises every field.
        unsafe {
            wdpool_message_init(m.as_mut_ptr());
            wdpool_message { topic, ..m.assume_init() }
        }
    }

    fn topic(bytes: &[u8]) -> Result<String> {
        let c = CString::new(bytes).unwrap();
        let m = message(c.as_ptr());
        // SAFETY: every pointer is NULL or valid.
        let borrowed = unsafe { borrow(&m) }?;
        borrowed.validate(10)?;
        Ok(borrowed.topic.to_owned())
    }

    fn refused(bytes: &[u8], says: &str) {
        let e = topic(bytes).unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidMessage, "{e:?}");
        assert!(e.message.contains("topic") && e.message.contains(says), "{:?} should say {says:?}: {}", bytes, e.message);
    }

    #[test]
    fn topic_names_in_one_pass_and_every_refusal_named() {
        assert_eq!(topic(b"events.v1_x-Y9").unwrap(), "events.v1_x-Y9");
        let longest = "t".repeat(MAX_TOPIC_LEN);
        assert_eq!(topic(longest.as_bytes()).unwrap(), longest);
        refused("t".repeat(MAX_TOPIC_LEN + 1).as_bytes(), "longer than 249");
        refused(b"", "must not be empty");
        refused(b"a b", "contains ' '");
        refused("caf\u{e9}".as_bytes(), "contains '\u{e9}'");
        refused(b"ab\xff", "not valid UTF-8");
        refused(b"\xffab", "not valid UTF-8");
    }

    #[test]
    fn a_null_topic_is_an_invalid_message() {
        // SAFETY: every pointer is NULL.
        let e = unsafe { borrow(&message(std::ptr::null())) }.unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidMessage, "{e:?}");
        assert!(e.message.contains("topic is NULL"), "{}", e.message);
    }
}
