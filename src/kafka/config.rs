//! One producer's configuration: librdkafka properties plus wdpool's own
//! settings (WaterDrop's `deliver`, `max_wait_timeout`, `max_payload_size`,
//! `id`). librdkafka properties are validated as they are set.

use std::time::Duration;

use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::error::KafkaError;

use crate::error::{Error, ErrorKind, Result};

/// WaterDrop's default `max_payload_size`.
pub const DEFAULT_MAX_PAYLOAD_SIZE: usize = 1_000_012;
/// WaterDrop's default `max_wait_timeout`.
pub const DEFAULT_MAX_WAIT_TIMEOUT: Duration = Duration::from_millis(180_000);
/// Brokers used when the configuration names none and `WDPOOL_BROKERS` is unset.
pub const DEFAULT_BROKERS: &str = "127.0.0.1:9092";
pub const BROKERS_ENV: &str = "WDPOOL_BROKERS";

/// Whether a librdkafka property holds a secret (a password, a private key,
/// an OAuth client secret, ...): its value is never shown, in errors,
/// `Debug` output or anywhere else. A superset of the properties
/// librdkafka itself marks sensitive and redacts from its logs.
pub fn is_sensitive(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    ["password", "secret", "passphrase", ".pem", "private.key", "ssl.key.", "sasl.oauthbearer.config", "jaas"]
        .iter()
        .any(|part| key.contains(part))
}

/// What to show of a property's value: "[redacted]" for a secret.
fn shown<'a>(key: &str, value: &'a str) -> &'a str {
    if is_sensitive(key) { "[redacted]" } else { value }
}

#[derive(Clone, PartialEq, Eq)]
pub struct ProducerConfig {
    kafka: Vec<(String, String)>,
    /// false: validate and acknowledge without contacting a broker.
    pub deliver: bool,
    /// Bounds waiting for deliveries, flushes and graceful close.
    pub max_wait_timeout: Duration,
    pub max_payload_size: usize,
    /// Identifies the producer in events; the default `client.id` too.
    pub id: Option<String>,
}

/// Like a derived `Debug`, but secrets show as "[redacted]" (see
/// [`is_sensitive`]).
impl std::fmt::Debug for ProducerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kafka: Vec<(&str, &str)> = self.kafka.iter().map(|(k, v)| (k.as_str(), shown(k, v))).collect();
        f.debug_struct("ProducerConfig")
            .field("kafka", &kafka)
            .field("deliver", &self.deliver)
            .field("max_wait_timeout", &self.max_wait_timeout)
            .field("max_payload_size", &self.max_payload_size)
            .field("id", &self.id)
            .finish()
    }
}

impl Default for ProducerConfig {
    fn default() -> Self {
        ProducerConfig {
            kafka: Vec::new(),
            deliver: true,
            max_wait_timeout: DEFAULT_MAX_WAIT_TIMEOUT,
            max_payload_size: DEFAULT_MAX_PAYLOAD_SIZE,
            id: None,
        }
    }
}

impl ProducerConfig {
    /// Sets a librdkafka property after checking it with librdkafka itself,
    /// so an unknown key or a bad value fails here, naming the key.
    pub fn set_kafka(&mut self, key: &str, value: &str) -> Result<()> {
        let mut probe = ClientConfig::new();
        probe.set(key, value);
        if let Err(err) = probe.create_native_config() {
            let mut reason = match &err {
                KafkaError::ClientConfig(_, desc, _, _) => desc.clone(),
                other => other.to_string(),
            };
            // librdkafka's reason may quote the value.
            if is_sensitive(key) && !value.is_empty() {
                reason = reason.replace(value, "[redacted]");
            }
            return Err(Error::new(
                ErrorKind::InvalidConfig,
                format!("invalid config property `{key}`: {reason}"),
            ));
        }
        match self.kafka.iter_mut().find(|(k, _)| k == key) {
            Some(entry) => entry.1 = value.to_owned(),
            None => self.kafka.push((key.to_owned(), value.to_owned())),
        }
        Ok(())
    }

    pub fn kafka(&self, key: &str) -> Option<&str> {
        self.kafka.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    pub fn is_transactional(&self) -> bool {
        self.kafka("transactional.id").is_some_and(|v| !v.is_empty())
    }

    /// The id, or one derived from the pool and slot.
    pub fn id_or(&self, pool_id: u64, index: usize) -> String {
        self.id.clone().unwrap_or_else(|| format!("wdpool-{pool_id}-{index}"))
    }

    /// The librdkafka configuration a producer is created with: the user's
    /// properties, brokers from `WDPOOL_BROKERS` (or 127.0.0.1:9092) when none
    /// are given, and `client.id` set to the producer's id unless given.
    pub fn client_config(&self, id: &str) -> ClientConfig {
        let mut config = ClientConfig::new();
        if self.kafka("bootstrap.servers").is_none() && self.kafka("metadata.broker.list").is_none() {
            let brokers = std::env::var(BROKERS_ENV)
                .ok()
                .filter(|b| !b.trim().is_empty())
                .unwrap_or_else(|| DEFAULT_BROKERS.to_owned());
            config.set("bootstrap.servers", brokers);
        }
        if self.kafka("client.id").is_none() {
            config.set("client.id", id);
        }
        for (k, v) in &self.kafka {
            config.set(k, v);
        }
        // Connection failures are logged at Info: the producer's context
        // keeps the last one to say why a timeout happened (rdkafka picks
        // the level from the `log` crate's, Error when nothing logs).
        if (config.log_level as i32) < RDKafkaLogLevel::Info as i32 {
            config.set_log_level(RDKafkaLogLevel::Info);
        }
        config
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_key_is_rejected_with_its_name() {
        let mut c = ProducerConfig::default();
        let e = c.set_kafka("no.such.property", "1").unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidConfig);
        assert!(e.message.contains("`no.such.property`"), "{}", e.message);
        assert_eq!(c, ProducerConfig::default(), "nothing was set");
    }

    #[test]
    fn invalid_value_is_rejected_with_librdkafkas_reason() {
        let mut c = ProducerConfig::default();
        let e = c.set_kafka("acks", "many").unwrap_err();
        assert!(e.message.contains("`acks`"), "{}", e.message);
        assert!(e.message.len() > "invalid config property `acks`: ".len(), "{}", e.message);
    }

    #[test]
    fn secrets_never_show_in_debug_output_or_errors() {
        let mut c = ProducerConfig::default();
        for key in ["sasl.password", "ssl.key.password", "ssl.keystore.password"] {
            c.set_kafka(key, "hunter2-secret").unwrap();
        }
        c.set_kafka("sasl.username", "alice").unwrap();
        let shown = format!("{c:?} {c:#?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("alice") && shown.contains("[redacted]"), "{shown}");
        for key in ["sasl.password", "ssl.key.pem", "sasl.oauthbearer.client.secret", "SSL.KEYSTORE.PASSWORD"] {
            assert!(is_sensitive(key), "{key}");
        }
        for key in ["bootstrap.servers", "sasl.username", "acks", "ssl.ca.location"] {
            assert!(!is_sensitive(key), "{key}");
        }
        // Refused (not in this build, or not a key): the value is not quoted.
        let e = c.set_kafka("sasl.oauthbearer.client.secret", "hunter2-secret").unwrap_err();
        assert!(!e.message.contains("hunter2"), "{}", e.message);
    }

    #[test]
    fn later_values_replace_earlier_ones() {
        let mut c = ProducerConfig::default();
        c.set_kafka("acks", "1").unwrap();
        c.set_kafka("acks", "all").unwrap();
        assert_eq!(c.kafka("acks"), Some("all"));
        assert_eq!(c.client_config("p").get("acks"), Some("all"));
    }

    #[test]
    fn client_config_defaults_client_id_and_keeps_given_brokers() {
        let mut c = ProducerConfig::default();
        c.set_kafka("bootstrap.servers", "127.0.0.1:1").unwrap();
        let cc = c.client_config("p-0");
        assert_eq!(cc.get("bootstrap.servers"), Some("127.0.0.1:1"));
        assert_eq!(cc.get("client.id"), Some("p-0"));
        assert!(!c.is_transactional());
        c.set_kafka("transactional.id", "tx-0").unwrap();
        assert!(c.is_transactional());
    }
}
