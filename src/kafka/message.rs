//! A message to produce, borrowed from the caller, and its validation
//! (WaterDrop's contract), done before anything is sent.

use crate::error::{Error, Result};

/// The longest topic name Kafka accepts.
pub const MAX_TOPIC_LEN: usize = 249;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header<'a> {
    pub key: &'a str,
    /// `None` is a header with a null value.
    pub value: Option<&'a [u8]>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message<'a> {
    pub topic: &'a str,
    /// `None` is a tombstone.
    pub payload: Option<&'a [u8]>,
    pub key: Option<&'a [u8]>,
    /// Chooses the partition the way the producer's partitioner would for
    /// this key, without setting the message key.
    pub partition_key: Option<&'a [u8]>,
    /// -1: any partition.
    pub partition: i32,
    /// Milliseconds since the epoch; `None`: the producer's clock.
    pub timestamp_ms: Option<i64>,
    pub headers: Vec<Header<'a>>,
}

impl<'a> Message<'a> {
    pub fn new(topic: &'a str, payload: Option<&'a [u8]>) -> Self {
        Message {
            topic,
            payload,
            key: None,
            partition_key: None,
            partition: -1,
            timestamp_ms: None,
            headers: Vec::new(),
        }
    }

    /// Checks the message against WaterDrop's contract; the error names the
    /// field.
    #[inline]
    pub fn validate(&self, max_payload_size: usize) -> Result<()> {
        validate_topic(self.topic)?;
        if let Some(payload) = self.payload {
            if payload.len() > max_payload_size {
                return Err(Error::invalid_message(
                    "payload",
                    format!("is {} bytes, more than max_payload_size ({max_payload_size})", payload.len()),
                ));
            }
        }
        if self.key.is_some_and(<[u8]>::is_empty) {
            return Err(Error::invalid_message("key", "must not be empty when given"));
        }
        if self.partition_key.is_some_and(<[u8]>::is_empty) {
            return Err(Error::invalid_message("partition_key", "must not be empty when given"));
        }
        if self.partition < -1 {
            return Err(Error::invalid_message("partition", format!("must be -1 (any) or >= 0, got {}", self.partition)));
        }
        if let Some(ts) = self.timestamp_ms {
            if ts < 0 {
                return Err(Error::invalid_message("timestamp", format!("must not be negative, got {ts}")));
            }
        }
        Ok(())
    }
}

/// The bytes a topic name may hold: ASCII letters, digits, '_', '-', '.'.
pub(crate) const TOPIC_BYTE: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric() || c == b'_' || c == b'-' || c == b'.';
        b += 1;
    }
    table
};

/// `/\A(\w|-|\.)+\z/`, as WaterDrop checks it, and Kafka's length limit.
#[inline]
pub fn validate_topic(topic: &str) -> Result<()> {
    if !topic.is_empty() && topic.len() <= MAX_TOPIC_LEN && topic.bytes().all(|b| TOPIC_BYTE[b as usize]) {
        return Ok(());
    }
    invalid_topic(topic)
}

/// Why `topic` is not a valid topic name.
#[cold]
fn invalid_topic(topic: &str) -> Result<()> {
    if topic.is_empty() {
        return Err(Error::invalid_message("topic", "must not be empty"));
    }
    if topic.len() > MAX_TOPIC_LEN {
        return Err(Error::invalid_message("topic", format!("is longer than {MAX_TOPIC_LEN} characters")));
    }
    if let Some(bad) = topic.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))) {
        return Err(Error::invalid_message("topic", format!("contains {bad:?}; allowed are letters, digits, '_', '-' and '.'")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    fn field_of(m: &Message<'_>) -> String {
        let e = m.validate(10).unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidMessage);
        e.message
    }

    #[test]
    fn accepts_a_plain_message_and_a_tombstone() {
        Message::new("events.v1_x-y", Some(b"hi")).validate(10).unwrap();
        Message::new("events", None).validate(10).unwrap();
        Message::new("events", Some(b"")).validate(10).unwrap();
    }

    #[test]
    fn names_the_field_it_rejects() {
        assert!(field_of(&Message::new("", Some(b"x"))).contains("topic"));
        assert!(field_of(&Message::new("a b", Some(b"x"))).contains("topic"));
        assert!(field_of(&Message::new(&"t".repeat(250), None)).contains("topic"));
        assert!(field_of(&Message::new("t", Some(&[0; 11]))).contains("payload"));
        let mut m = Message::new("t", None);
        m.key = Some(b"");
        assert!(field_of(&m).contains("key"));
        let mut m = Message::new("t", None);
        m.partition_key = Some(b"");
        assert!(field_of(&m).contains("partition_key"));
        let mut m = Message::new("t", None);
        m.partition = -2;
        assert!(field_of(&m).contains("partition"));
        let mut m = Message::new("t", None);
        m.timestamp_ms = Some(-5);
        assert!(field_of(&m).contains("timestamp"));
    }

    #[test]
    fn payload_at_the_limit_is_fine() {
        Message::new("t", Some(&[0; 10])).validate(10).unwrap();
    }
}
