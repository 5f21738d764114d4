//! The `[kafka]` section: the cluster's bootstrap servers and librdkafka settings
//! passed through to the clients jobs make (SASL, SSL, compression, batching, ...).
//!
//! ```toml
//! [kafka]
//! brokers = "kafka-1:9092,kafka-2:9092"
//!
//! [kafka.settings]            # every client, consumers and producers
//! security.protocol = "SASL_PLAINTEXT"
//! sasl.mechanism = "PLAIN"
//!
//! [kafka.consumer]            # consumers only (win over [kafka.settings])
//! fetch.min.bytes = 65536
//!
//! [kafka.producer]            # producers only (win over [kafka.settings])
//! compression.type = "lz4"
//! linger.ms = 5
//! ```
//!
//! librdkafka's property names contain dots; written unquoted they are TOML dotted
//! keys (nested tables), which this section flattens back, so `linger.ms = 5` and
//! `"linger.ms" = "5"` mean the same. Values may be strings, integers, floats or
//! booleans and reach librdkafka as text. Every setting is checked against
//! librdkafka itself when the file is validated, so a misspelt property or a bad
//! value is reported with its key before a job starts.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

use crate::connector::dead_letter::DeadLetters;
use crate::connector::kafka::{KafkaFormat, KafkaSink, KafkaSource};

/// librdkafka settings by property name (`linger.ms` -> `5`), as text.
#[derive(Clone, Debug, PartialEq, Eq, Default, Serialize)]
#[serde(transparent)]
pub struct KafkaSettings(pub BTreeMap<String, String>);

impl KafkaSettings {
    /// The settings, by property name.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &String)> {
        self.0.iter()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The Kafka cluster jobs read from and write to (`[kafka]`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    /// Bootstrap servers, `host:port[,host:port...]` (librdkafka's
    /// `bootstrap.servers`). `None`: jobs that use Kafka must be told on their
    /// command line.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub brokers: Option<String>,
    /// Settings passed to every client (`[kafka.settings]`).
    pub settings: KafkaSettings,
    /// Settings passed to consumers only, over `settings` (`[kafka.consumer]`).
    pub consumer: KafkaSettings,
    /// Settings passed to producers only, over `settings` (`[kafka.producer]`).
    pub producer: KafkaSettings,
}

/// Properties that have their own key or are weir's to set, so they are rejected
/// in the settings tables, with what to do instead.
pub const RESERVED_SETTINGS: &[(&str, &str)] = &[
    (
        "bootstrap.servers",
        "set kafka.brokers (or --kafka-brokers) instead",
    ),
    (
        "metadata.broker.list",
        "set kafka.brokers (or --kafka-brokers) instead",
    ),
    (
        "enable.auto.commit",
        "offsets live in weir's snapshots; the source never lets the client commit on its own",
    ),
    (
        "enable.auto.offset.store",
        "offsets live in weir's snapshots; the source never lets the client store them",
    ),
    (
        "transactional.id",
        "the exactly-once Kafka sink names its transactional producers from its id \
         (KafkaSink::id)",
    ),
];

impl KafkaConfig {
    /// What a consumer gets: `settings`, then `consumer` over it.
    pub fn consumer_settings(&self) -> BTreeMap<String, String> {
        merged(&self.settings, &self.consumer)
    }

    /// What a producer gets: `settings`, then `producer` over it.
    pub fn producer_settings(&self) -> BTreeMap<String, String> {
        merged(&self.settings, &self.producer)
    }

    /// The bootstrap servers, or an error naming the key and the flag to set.
    pub fn require_brokers(&self) -> Result<&str, String> {
        self.brokers.as_deref().ok_or_else(|| {
            "no Kafka cluster configured: set kafka.brokers in the config file or pass \
             --kafka-brokers"
                .to_owned()
        })
    }

    /// A Kafka source of `topics` on this cluster with the consumer settings
    /// (decoding values with `format`; undecodable records go to `dead_letters`).
    /// The builder's other setters can follow.
    pub fn source<F, I, T>(
        &self,
        topics: I,
        format: F,
        dead_letters: DeadLetters,
    ) -> Result<KafkaSource<F>, String>
    where
        F: KafkaFormat,
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        let brokers = self.require_brokers()?;
        Ok(KafkaSource::new(brokers, topics, format, dead_letters)
            .settings(self.consumer_settings()))
    }

    /// A Kafka sink writing to `topic` on this cluster with the producer settings,
    /// each record made by `format`. The builder's other setters (delivery, id,
    /// staging directory) can follow.
    pub fn sink<F>(&self, topic: impl Into<String>, format: F) -> Result<KafkaSink<F>, String> {
        let brokers = self.require_brokers()?;
        Ok(KafkaSink::new(brokers, topic, format).settings(self.producer_settings()))
    }

    /// Sets `key` for every client (a `--kafka-set key=value` flag): it replaces
    /// the key in `[kafka.settings]` and removes it from the consumer and producer
    /// tables, so the flag wins everywhere.
    pub fn set_everywhere(&mut self, key: &str, value: &str) {
        self.consumer.0.remove(key);
        self.producer.0.remove(key);
        self.settings.0.insert(key.to_owned(), value.to_owned());
    }
}

/// `base`, then `over` replacing its keys.
fn merged(base: &KafkaSettings, over: &KafkaSettings) -> BTreeMap<String, String> {
    let mut out = base.0.clone();
    out.extend(over.0.iter().map(|(k, v)| (k.clone(), v.clone())));
    out
}

/// Parses `key=value` (a `--kafka-set` flag's value).
pub fn parse_setting(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => {
            Ok((key.trim().to_owned(), value.to_owned()))
        }
        _ => Err(format!(
            "`{text}` is not a librdkafka setting; expected KEY=VALUE such as linger.ms=5"
        )),
    }
}

/// Checks the section, returning the dotted key of the first bad setting, its
/// value as written in TOML, and the reason.
pub(super) fn check(kafka: &KafkaConfig) -> Result<(), (String, String, String)> {
    if let Some(brokers) = &kafka.brokers {
        check_brokers(brokers).map_err(|reason| {
            (
                "kafka.brokers".to_owned(),
                super::validate::toml_string(brokers),
                reason,
            )
        })?;
    }
    for (table, settings) in [
        ("settings", &kafka.settings),
        ("consumer", &kafka.consumer),
        ("producer", &kafka.producer),
    ] {
        for (key, value) in settings.iter() {
            let bad = |reason: String| {
                (
                    format!("kafka.{table}.{}", super::validate::toml_key(key)),
                    super::validate::toml_string(value),
                    reason,
                )
            };
            if let Some((_, why)) = RESERVED_SETTINGS.iter().find(|(k, _)| k == key) {
                return Err(bad(format!("is not accepted here: {why}")));
            }
            let mut probe = rdkafka::ClientConfig::new();
            probe.set(key, value);
            if let Err(error) = probe.create_native_config() {
                return Err(bad(format!(
                    "librdkafka rejects it: {}",
                    librdkafka_reason(&error)
                )));
            }
        }
    }
    Ok(())
}

/// librdkafka's own explanation of a rejected setting.
fn librdkafka_reason(error: &rdkafka::error::KafkaError) -> String {
    match error {
        rdkafka::error::KafkaError::ClientConfig(_, description, _, _) => description.clone(),
        other => other.to_string(),
    }
}

/// Checks `host:port[,host:port...]`.
fn check_brokers(brokers: &str) -> Result<(), String> {
    if brokers.trim().is_empty() {
        return Err("must not be empty; leave the key out when no job uses Kafka".to_owned());
    }
    for entry in brokers.split(',').map(str::trim) {
        let port = entry
            .rsplit_once(':')
            .filter(|(host, _)| !host.is_empty())
            .and_then(|(_, port)| port.parse::<u16>().ok());
        if port.is_none() {
            return Err(format!(
                "`{entry}` is not host:port; expected e.g. \"kafka-1:9092,kafka-2:9092\""
            ));
        }
    }
    Ok(())
}

impl<'de> Deserialize<'de> for KafkaSettings {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        de.deserialize_map(SettingsVisitor)
    }
}

/// Reads a settings table, flattening nested tables (TOML dotted keys) into dotted
/// property names and turning scalar values into text.
struct SettingsVisitor;

impl<'de> Visitor<'de> for SettingsVisitor {
    type Value = KafkaSettings;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a table of librdkafka settings (property = value)")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = BTreeMap::new();
        while let Some((key, value)) = map.next_entry::<String, toml::Value>()? {
            flatten(&key, value, &mut out).map_err(serde::de::Error::custom)?;
        }
        Ok(KafkaSettings(out))
    }
}

/// Adds `value` under `key` (a table: each of its entries under `key.entry`).
fn flatten(
    key: &str,
    value: toml::Value,
    out: &mut BTreeMap<String, String>,
) -> Result<(), String> {
    let text = match value {
        toml::Value::String(s) => s,
        toml::Value::Integer(i) => i.to_string(),
        toml::Value::Float(f) => f.to_string(),
        toml::Value::Boolean(b) => b.to_string(),
        toml::Value::Table(table) => {
            for (inner, value) in table {
                flatten(&format!("{key}.{inner}"), value, out)?;
            }
            return Ok(());
        }
        toml::Value::Array(_) => {
            return Err(format!(
                "librdkafka setting `{key}`: an array is not a librdkafka value; write a \
                 comma-separated string"
            ))
        }
        toml::Value::Datetime(_) => {
            return Err(format!(
                "librdkafka setting `{key}`: a date is not a librdkafka value; write a string"
            ))
        }
    };
    if out.insert(key.to_owned(), text).is_some() {
        return Err(format!("librdkafka setting `{key}` is given twice"));
    }
    Ok(())
}
