//! The client settings a reader's consumer is made with: the user's librdkafka
//! settings passed through unchanged, then the few weir must set, which win.

use std::collections::BTreeMap;

use rdkafka::config::ClientConfig;

/// The settings weir sets on every consumer, overriding the user's, and why:
///
/// - `enable.auto.commit=false` and `enable.auto.offset.store=false`: offsets live
///   in weir's snapshots; the client must not commit or store them on its own
///   (weir commits each completed epoch's offsets itself, to a configured group).
/// - `enable.partition.eof=false`: the end of a partition is found from its high
///   watermark (for `stop_at_end`), not from EOF events.
/// - `allow.auto.create.topics=false`: reading must never create a topic.
///
/// `bootstrap.servers` (and `group.id`, when set with
/// [`KafkaSource::group_id`](super::KafkaSource::group_id)) come from the source's
/// builder and win over the map too.
pub const REQUIRED: &[(&str, &str)] = &[
    ("enable.auto.commit", "false"),
    ("enable.auto.offset.store", "false"),
    ("enable.partition.eof", "false"),
    ("allow.auto.create.topics", "false"),
];

/// The settings weir uses unless the user sets them:
///
/// - `auto.offset.reset=earliest`: when a stored or restored offset is no longer
///   in the log (retention deleted it), read from the oldest record kept rather
///   than skip to the newest.
/// - `statistics.interval.ms=5000`: librdkafka's statistics every 5 s carry the
///   partitions' end offsets, from which the reader publishes its consumer lag
///   (`weir_kafka_consumer_lag_records`) without requests of its own; `0` turns
///   the lag metric off.
pub const DEFAULTS: &[(&str, &str)] = &[
    ("auto.offset.reset", "earliest"),
    ("statistics.interval.ms", "5000"),
];

/// The `group.id` a consumer gets when none is set: librdkafka's consumer refuses
/// `assign` without one. The source never joins the group (it assigns partitions
/// itself) and never commits to it (completed epochs' offsets are committed only
/// to a group the user configured), so the name only shows in the broker's logs.
pub const DEFAULT_GROUP_ID: &str = "weir-source";

/// The consumer configuration: defaults, then the user's `settings`, then
/// `bootstrap.servers`, `group.id` and [`REQUIRED`].
pub fn client_config(
    bootstrap: &str,
    group_id: Option<&str>,
    settings: &BTreeMap<String, String>,
) -> ClientConfig {
    let group = match group_id {
        Some(group) => Some(group),
        None if !settings.contains_key("group.id") => Some(DEFAULT_GROUP_ID),
        None => None,
    };
    let mut fixed = vec![("bootstrap.servers", bootstrap)];
    fixed.extend(group.map(|g| ("group.id", g)));
    layered(DEFAULTS, settings, &fixed, REQUIRED, "kafka source")
}

/// A client configuration in layers, later ones winning: weir's `defaults`, the
/// user's `settings` (any librdkafka setting, passed through unchanged), the values
/// the builder `fixed` (bootstrap servers, ids), and the `required` settings weir
/// must make, with a warning naming `client` when the user set one of those
/// differently. The Kafka source's consumers and the Kafka sink's producers are
/// both made this way.
pub fn layered(
    defaults: &[(&str, &str)],
    settings: &BTreeMap<String, String>,
    fixed: &[(&str, &str)],
    required: &[(&str, &str)],
    client: &str,
) -> ClientConfig {
    let mut config = ClientConfig::new();
    for (k, v) in defaults {
        config.set(*k, *v);
    }
    for (k, v) in settings {
        config.set(k, v);
    }
    for (k, v) in fixed {
        config.set(*k, *v);
    }
    for (k, v) in required {
        if let Some(user) = settings.get(*k).filter(|user| user.as_str() != *v) {
            tracing::warn!(setting = k, user = %user, weir = v, client,
                "kafka: this setting is weir's to make; the user's value is ignored");
        }
        config.set(*k, *v);
    }
    config
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_settings_pass_through_and_weirs_required_ones_win() {
        let mut user = BTreeMap::new();
        user.insert("security.protocol".to_string(), "SASL_SSL".to_string());
        user.insert("sasl.mechanism".to_string(), "PLAIN".to_string());
        user.insert("fetch.min.bytes".to_string(), "1024".to_string());
        user.insert("enable.auto.commit".to_string(), "true".to_string());
        user.insert("auto.offset.reset".to_string(), "latest".to_string());
        user.insert(
            "bootstrap.servers".to_string(),
            "elsewhere:9092".to_string(),
        );
        let c = client_config("127.0.0.1:9092", Some("g"), &user);
        assert_eq!(c.get("security.protocol"), Some("SASL_SSL"));
        assert_eq!(c.get("sasl.mechanism"), Some("PLAIN"));
        assert_eq!(c.get("fetch.min.bytes"), Some("1024"));
        assert_eq!(
            c.get("auto.offset.reset"),
            Some("latest"),
            "a default the user may change"
        );
        assert_eq!(
            c.get("enable.auto.commit"),
            Some("false"),
            "required: weir wins"
        );
        assert_eq!(c.get("bootstrap.servers"), Some("127.0.0.1:9092"));
        assert_eq!(c.get("group.id"), Some("g"));
        for (k, v) in REQUIRED {
            assert_eq!(c.get(k), Some(*v));
        }
    }
}

#[cfg(test)]
mod consumer_tests {
    use super::*;
    use rdkafka::consumer::BaseConsumer;

    fn create(pairs: &[(&str, &str)]) -> Result<BaseConsumer, rdkafka::error::KafkaError> {
        let settings = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        client_config("127.0.0.1:1", None, &settings).create()
    }

    #[test]
    fn passed_through_settings_reach_librdkafka() {
        // Creating a consumer connects to nothing; librdkafka checks every setting.
        create(&[
            ("security.protocol", "SASL_PLAINTEXT"),
            ("sasl.mechanism", "PLAIN"),
            ("sasl.username", "u"),
            ("sasl.password", "p"),
            ("fetch.max.bytes", "1048576"),
        ])
        .expect("valid settings");
        let err = create(&[("fetch.max.bytez", "1")])
            .map(|_| ())
            .unwrap_err()
            .to_string();
        assert!(err.contains("fetch.max.bytez"), "{err}");
        // TLS is built in (rdkafka's `ssl-vendored`): SSL and SASL_SSL with SCRAM are
        // accepted. Kerberos (GSSAPI) is not built in; docs/kafka.md says so.
        create(&[
            ("security.protocol", "SSL"),
            ("ssl.endpoint.identification.algorithm", "https"),
        ])
        .expect("TLS is built in");
        create(&[
            ("security.protocol", "SASL_SSL"),
            ("sasl.mechanism", "SCRAM-SHA-512"),
            ("sasl.username", "u"),
            ("sasl.password", "p"),
        ])
        .expect("SASL over TLS is built in");
        let gssapi = create(&[
            ("security.protocol", "SASL_PLAINTEXT"),
            ("sasl.mechanism", "GSSAPI"),
        ])
        .map(|_| ())
        .unwrap_err()
        .to_string();
        assert!(gssapi.contains("GSSAPI"), "{gssapi}");
    }
}
