//! Tests for parsing, validation, rendering and error messages.

use std::net::SocketAddr;
use std::path::PathBuf;

use proptest::prelude::*;

use super::*;

/// Parses `text` from the origin `node.toml`, expecting failure.
fn parse_err(text: &str) -> ConfigError {
    match WeirConfig::from_toml_str(text, "node.toml") {
        Ok(config) => panic!("expected an error for {text:?}, got {config:?}"),
        Err(err) => err,
    }
}

/// Parses `text`, expecting success.
fn parse_ok(text: &str) -> WeirConfig {
    match WeirConfig::from_toml_str(text, "node.toml") {
        Ok(config) => config,
        Err(err) => panic!("expected {text:?} to parse, got: {err}"),
    }
}

/// A configuration in which every field differs from its default.
fn everything_set() -> WeirConfig {
    WeirConfig {
        engine: EngineConfig {
            workers: 7,
            parallelism: Some(5),
            key_partitions: 256,
            mailbox_capacity: 32,
            batch_size: 500,
        },
        state: StateConfig {
            dir: Some(PathBuf::from("/var/lib/weir/state")),
            cache_entries: 4242,
            sled_cache_mb: 128,
            snapshot_url: Some("s3://weir-snaps/prod".to_owned()),
            s3_endpoint: Some("http://127.0.0.1:9000".to_owned()),
            s3_allow_http: true,
            s3_region: Some("eu-west-1".to_owned()),
        },
        progress: ProgressConfig {
            enabled: false,
            interval_ms: 250,
        },
        log: LogConfig {
            format: LogFormat::Json,
            filter: "weir=debug,sled=warn".to_owned(),
        },
        metrics: MetricsConfig {
            enabled: false,
            addr: "0.0.0.0:9100".parse().expect("literal address"),
            state_interval_ms: 5_000,
        },
        checkpoint: CheckpointConfig {
            interval_ms: 5000,
            timeout_ms: 20_000,
            retain: 5,
            compact_after: 4,
        },
        restart: RestartConfig {
            strategy: RestartStrategyName::ExponentialBackoff,
            attempts: 7,
            delay_ms: 250,
            initial_delay_ms: 50,
            max_delay_ms: 10_000,
            multiplier: 1.5,
            reset_after_ms: 120_000,
            max_failures: 6,
            failure_interval_ms: 300_000,
        },
        poison: PoisonConfig {
            enabled: false,
            replays: 2,
        },
        savepoint: SavepointConfig {
            dir: Some(PathBuf::from("/var/lib/weir/savepoints")),
        },
        http: HttpConfig {
            enabled: false,
            addr: "0.0.0.0:8090".parse().expect("literal address"),
            token_file: Some(PathBuf::from("/run/secrets/weir-http-token")),
        },
        kafka: KafkaConfig {
            brokers: Some("kafka-1:9092,kafka-2:9092".to_owned()),
            settings: settings(&[
                ("security.protocol", "SASL_PLAINTEXT"),
                ("sasl.mechanism", "PLAIN"),
            ]),
            consumer: settings(&[("fetch.min.bytes", "65536")]),
            producer: settings(&[("compression.type", "lz4"), ("linger.ms", "5")]),
        },
    }
}

/// Settings from pairs.
fn settings(pairs: &[(&str, &str)]) -> KafkaSettings {
    KafkaSettings(
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
    )
}

const FULL_FILE: &str = r#"
[engine]
workers = 7
parallelism = 5
key_partitions = 256
mailbox_capacity = 32
batch_size = 500

[state]
dir = "/var/lib/weir/state"
cache_entries = 4242
sled_cache_mb = 128
snapshot_url = "s3://weir-snaps/prod"
s3_endpoint = "http://127.0.0.1:9000"
s3_allow_http = true
s3_region = "eu-west-1"

[progress]
enabled = false
interval_ms = 250

[log]
format = "json"
filter = "weir=debug,sled=warn"

[metrics]
enabled = false
addr = "0.0.0.0:9100"
state_interval_ms = 5000

[checkpoint]
interval_ms = 5000
timeout_ms = 20000
retain = 5
compact_after = 4

[restart]
strategy = "exponential-backoff"
attempts = 7
delay_ms = 250
initial_delay_ms = 50
max_delay_ms = 10000
multiplier = 1.5
reset_after_ms = 120000
max_failures = 6
failure_interval_ms = 300000

[poison]
enabled = false
replays = 2

[savepoint]
dir = "/var/lib/weir/savepoints"

[http]
enabled = false
addr = "0.0.0.0:8090"
token_file = "/run/secrets/weir-http-token"

[kafka]
brokers = "kafka-1:9092,kafka-2:9092"

[kafka.settings]
security.protocol = "SASL_PLAINTEXT"
"sasl.mechanism" = "PLAIN"

[kafka.consumer]
fetch.min.bytes = 65536

[kafka.producer]
compression.type = "lz4"
linger.ms = 5
"#;

#[test]
fn kafka_settings_flatten_dotted_keys_and_take_scalars_as_text() {
    let config = parse_ok(
        "[kafka.producer]\nlinger.ms = 5\nenable.idempotence = true\n\
         \"batch.size\" = \"16384\"\nsticky.partitioning.linger.ms = 1.5\n",
    );
    assert_eq!(
        config.kafka.producer,
        settings(&[
            ("batch.size", "16384"),
            ("enable.idempotence", "true"),
            ("linger.ms", "5"),
            ("sticky.partitioning.linger.ms", "1.5"),
        ])
    );
}

#[test]
fn consumer_and_producer_tables_win_over_the_common_one() {
    let config = parse_ok(
        "[kafka.settings]\nclient.id = \"all\"\nsocket.timeout.ms = 1000\n\
         [kafka.consumer]\nclient.id = \"reader\"\n[kafka.producer]\nlinger.ms = 9\n",
    );
    let consumer = config.kafka.consumer_settings();
    assert_eq!(consumer["client.id"], "reader");
    assert_eq!(consumer["socket.timeout.ms"], "1000");
    assert!(!consumer.contains_key("linger.ms"));
    let producer = config.kafka.producer_settings();
    assert_eq!(producer["client.id"], "all");
    assert_eq!(producer["linger.ms"], "9");
}

#[test]
fn kafka_settings_are_checked_by_librdkafka_with_their_key() {
    let cases = [
        (
            "[kafka.settings]\nlinger.mss = 5\n",
            "kafka.settings.\"linger.mss\"",
            "No such configuration property",
        ),
        (
            "[kafka.producer]\ncompression.type = \"zip\"\n",
            "kafka.producer.\"compression.type\"",
            "compression.type",
        ),
        (
            "[kafka.consumer]\nbootstrap.servers = \"h:1\"\n",
            "kafka.consumer.\"bootstrap.servers\"",
            "kafka.brokers",
        ),
        (
            "[kafka.consumer]\nenable.auto.commit = true\n",
            "kafka.consumer.\"enable.auto.commit\"",
            "snapshots",
        ),
        (
            "[kafka]\nbrokers = \"\"\n",
            "kafka.brokers",
            "must not be empty",
        ),
        (
            "[kafka]\nbrokers = \"h:1,nohost\"\n",
            "kafka.brokers",
            "`nohost` is not host:port",
        ),
        (
            "[kafka]\nbrokers = \":9092\"\n",
            "kafka.brokers",
            "not host:port",
        ),
    ];
    for (text, key, reason) in cases {
        let err = parse_err(text);
        assert_eq!(err.key(), Some(key), "{text:?}: {err}");
        let message = err.to_string();
        assert!(message.contains(reason), "{text:?}: {message}");
        assert!(message.contains("node.toml"), "{message}");
    }
}

#[test]
fn kafka_section_shape_errors_name_the_nested_key() {
    let cases = [
        ("[kafka]\nbroker = \"h:1\"\n", "kafka.broker"),
        ("[kafka]\nbrokers = 9092\n", "kafka.brokers"),
        (
            "[kafka.producer]\nlinger.ms = [1, 2]\n",
            "kafka.producer.linger.ms",
        ),
        ("[kafka]\nsettings = 5\n", "kafka.settings"),
        ("[kafka.admin]\nx = 1\n", "kafka.admin"),
    ];
    assert_parse_errors_name_keys(&cases);
    let ConfigError::Parse { message, .. } = parse_err("[kafka.producer]\nlinger.ms = [1]\n")
    else {
        panic!("expected a parse error");
    };
    assert!(message.contains("comma-separated"), "{message}");
    let ConfigError::Parse { message, .. } = parse_err("[kafka.consumer]\nx = 1979-05-27\n") else {
        panic!("expected a parse error");
    };
    assert!(message.contains("setting `x`: a date"), "{message}");
}

#[test]
fn empty_file_gives_defaults() {
    assert_eq!(parse_ok(""), WeirConfig::default());
    assert_eq!(parse_ok("# only a comment\n"), WeirConfig::default());
}

#[test]
fn defaults_match_the_documented_values() {
    let config = WeirConfig::default();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    assert_eq!(config.engine.workers, cores);
    assert_eq!(config.engine.parallelism, None);
    assert_eq!(config.engine.key_partitions, 128);
    assert_eq!(config.engine.mailbox_capacity, 16);
    assert_eq!(config.engine.batch_size, 1024);
    assert_eq!(config.state.dir, None);
    assert_eq!(config.state.cache_entries, 1_000_000);
    assert_eq!(config.state.sled_cache_mb, 64);
    assert!(config.progress.enabled);
    assert_eq!(config.progress.interval_ms, 1000);
    assert_eq!(config.log.format, LogFormat::Text);
    assert_eq!(config.log.filter, "info");
    assert_eq!(config.metrics.addr.to_string(), "127.0.0.1:9464");
    assert_eq!(config.checkpoint.interval_ms, 0);
    assert_eq!(config.checkpoint.interval(), None);
    assert_eq!(config.checkpoint.timeout_ms, 60_000);
    assert_eq!(config.checkpoint.retain, 3);
    assert_eq!(config.checkpoint.compact_after, 8);
    assert_eq!(config.restart.strategy, RestartStrategyName::FixedDelay);
    assert_eq!(config.restart.attempts, 10);
    assert_eq!(config.restart.delay_ms, 1000);
    assert_eq!(config.restart.initial_delay_ms, 100);
    assert_eq!(config.restart.max_delay_ms, 30_000);
    assert_eq!(config.restart.multiplier, 2.0);
    assert_eq!(config.restart.reset_after_ms, 60_000);
    assert_eq!(config.restart.max_failures, 3);
    assert_eq!(config.restart.failure_interval_ms, 60_000);
    assert!(config.poison.enabled);
    assert_eq!(config.poison.replays, 3);
    assert_eq!(config.savepoint.dir, None);
    assert!(config.http.enabled);
    assert_eq!(config.http.addr.to_string(), "127.0.0.1:8081");
    if let Err(err) = config.validate() {
        panic!("the defaults must be valid: {err}");
    }
}

#[test]
fn partial_section_keeps_other_defaults() {
    let config = parse_ok("[engine]\nbatch_size = 10\n");
    assert_eq!(config.engine.batch_size, 10);
    assert_eq!(config.engine.key_partitions, 128);
    assert_eq!(config.state, StateConfig::default());
}

#[test]
fn full_file_parses_to_every_value_and_round_trips() {
    let config = parse_ok(FULL_FILE);
    assert_eq!(config, everything_set());
    let rendered = config.to_toml_string();
    assert_eq!(parse_ok(&rendered), config, "rendered:\n{rendered}");
}

#[test]
fn defaults_render_and_parse_back_equal() {
    let defaults = WeirConfig::default();
    let rendered = defaults.to_toml_string();
    assert_eq!(parse_ok(&rendered), defaults, "rendered:\n{rendered}");
    // Every key is present, either as a setting or, for unset options, as a comment.
    for key in [
        "workers = ",
        "# parallelism = ",
        "key_partitions = ",
        "mailbox_capacity = ",
        "batch_size = ",
        "# dir = ",
        "cache_entries = ",
        "sled_cache_mb = ",
        "enabled = ",
        "interval_ms = ",
        "format = ",
        "filter = ",
        "addr = ",
        "[checkpoint]",
        "timeout_ms = ",
        "retain = ",
        "compact_after = ",
        "[restart]",
        "strategy = ",
        "attempts = ",
        "delay_ms = ",
        "initial_delay_ms = ",
        "max_delay_ms = ",
        "multiplier = ",
        "reset_after_ms = ",
        "max_failures = ",
        "failure_interval_ms = ",
        "[poison]",
        "replays = ",
        "[savepoint]",
        "# dir = \"weir-savepoints\"",
        "[http]",
        "addr = \"127.0.0.1:8081\"",
    ] {
        assert!(rendered.contains(key), "missing {key:?} in:\n{rendered}");
    }
}

#[test]
fn rendering_escapes_strings() {
    let mut config = WeirConfig::default();
    config.log.filter = "weir=\"quoted\"\\back\nline".to_owned();
    config.state.dir = Some(PathBuf::from("C:\\weir\\state 'x'"));
    let rendered = config.to_toml_string();
    assert_eq!(parse_ok(&rendered), config, "rendered:\n{rendered}");
}

#[test]
fn every_range_rule_reports_its_dotted_key() {
    // (file text, dotted key, rejected value as rendered)
    let cases: &[(&str, &str, &str)] = &[
        ("[engine]\nworkers = 0", "engine.workers", "0"),
        ("[engine]\nparallelism = 0", "engine.parallelism", "0"),
        ("[engine]\nkey_partitions = 0", "engine.key_partitions", "0"),
        (
            "[engine]\nkey_partitions = 65537",
            "engine.key_partitions",
            "65537",
        ),
        (
            "[engine]\nmailbox_capacity = 0",
            "engine.mailbox_capacity",
            "0",
        ),
        (
            "[engine]\nmailbox_capacity = 1000001",
            "engine.mailbox_capacity",
            "1000001",
        ),
        ("[engine]\nbatch_size = 0", "engine.batch_size", "0"),
        (
            "[engine]\nbatch_size = 1000001",
            "engine.batch_size",
            "1000001",
        ),
        (
            "[engine]\nparallelism = 9\nkey_partitions = 8",
            "engine.parallelism",
            "9",
        ),
        ("[state]\ndir = \"\"", "state.dir", "\"\""),
        ("[state]\ncache_entries = 0", "state.cache_entries", "0"),
        ("[state]\nsled_cache_mb = 0", "state.sled_cache_mb", "0"),
        (
            "[state]\nsled_cache_mb = 65537",
            "state.sled_cache_mb",
            "65537",
        ),
        ("[progress]\ninterval_ms = 49", "progress.interval_ms", "49"),
        (
            "[progress]\ninterval_ms = 3600001",
            "progress.interval_ms",
            "3600001",
        ),
        ("[log]\nfilter = \"\"", "log.filter", "\"\""),
        (
            "[metrics]\nstate_interval_ms = 999",
            "metrics.state_interval_ms",
            "999",
        ),
        (
            "[metrics]\nstate_interval_ms = 86400001",
            "metrics.state_interval_ms",
            "86400001",
        ),
        ("[log]\nfilter = \"  \"", "log.filter", "\"  \""),
        (
            "[checkpoint]\ninterval_ms = 9",
            "checkpoint.interval_ms",
            "9",
        ),
        (
            "[checkpoint]\ninterval_ms = 86400001",
            "checkpoint.interval_ms",
            "86400001",
        ),
        ("[checkpoint]\ntimeout_ms = 0", "checkpoint.timeout_ms", "0"),
        (
            "[checkpoint]\ntimeout_ms = 86400001",
            "checkpoint.timeout_ms",
            "86400001",
        ),
        ("[checkpoint]\nretain = 0", "checkpoint.retain", "0"),
        (
            "[checkpoint]\ncompact_after = 0",
            "checkpoint.compact_after",
            "0",
        ),
        ("[restart]\nattempts = 0", "restart.attempts", "0"),
        (
            "[restart]\ndelay_ms = 86400001",
            "restart.delay_ms",
            "86400001",
        ),
        (
            "[restart]\ninitial_delay_ms = 86400001",
            "restart.initial_delay_ms",
            "86400001",
        ),
        (
            "[restart]\nmax_delay_ms = 86400001",
            "restart.max_delay_ms",
            "86400001",
        ),
        ("[restart]\nmultiplier = 0.5", "restart.multiplier", "0.5"),
        (
            "[restart]\nmultiplier = 1001",
            "restart.multiplier",
            "1001.0",
        ),
        ("[restart]\nmultiplier = nan", "restart.multiplier", "nan"),
        ("[restart]\nmultiplier = inf", "restart.multiplier", "inf"),
        (
            "[restart]\nreset_after_ms = 0",
            "restart.reset_after_ms",
            "0",
        ),
        ("[restart]\nmax_failures = 0", "restart.max_failures", "0"),
        (
            "[restart]\nfailure_interval_ms = 0",
            "restart.failure_interval_ms",
            "0",
        ),
        (
            "[restart]\nstrategy = \"exponential-backoff\"\ninitial_delay_ms = 500\n\
             max_delay_ms = 499",
            "restart.max_delay_ms",
            "499",
        ),
        (
            "[restart]\nstrategy = \"failure-rate\"\ndelay_ms = 20001\nmax_failures = 3\n\
             failure_interval_ms = 60000",
            "restart.delay_ms",
            "20001",
        ),
        ("[poison]\nreplays = 0", "poison.replays", "0"),
        ("[savepoint]\ndir = \"\"", "savepoint.dir", "\"\""),
    ];
    for (text, want_key, want_value) in cases {
        match parse_err(text) {
            ConfigError::Invalid {
                origin,
                key,
                value,
                reason,
            } => {
                assert_eq!(origin, "node.toml", "for {text:?}");
                assert_eq!(&key, want_key, "for {text:?}");
                assert_eq!(&value, want_value, "for {text:?}");
                assert!(!reason.is_empty(), "for {text:?}");
            }
            other => panic!("expected Invalid for {text:?}, got {other:?}"),
        }
    }
}

#[test]
fn range_bounds_themselves_are_accepted() {
    let lows = "[engine]\nworkers = 1\nparallelism = 1\nkey_partitions = 1\n\
                mailbox_capacity = 1\nbatch_size = 1\n[state]\ncache_entries = 1\n\
                sled_cache_mb = 1\n[progress]\ninterval_ms = 50\n";
    parse_ok(lows);
    let highs = "[engine]\nparallelism = 65536\nkey_partitions = 65536\n\
                 mailbox_capacity = 1000000\nbatch_size = 1000000\n[state]\n\
                 sled_cache_mb = 65536\n[progress]\ninterval_ms = 3600000\n";
    parse_ok(highs);
    let checkpoint_lows = "[checkpoint]\ninterval_ms = 10\ntimeout_ms = 1\nretain = 1\n\
                           compact_after = 1\n";
    parse_ok(checkpoint_lows);
    let checkpoint_highs = "[checkpoint]\ninterval_ms = 86400000\ntimeout_ms = 86400000\n";
    parse_ok(checkpoint_highs);
    let restart_lows = "[restart]\nattempts = 1\ndelay_ms = 0\ninitial_delay_ms = 0\n\
                        max_delay_ms = 0\nmultiplier = 1.0\nreset_after_ms = 1\n\
                        max_failures = 1\nfailure_interval_ms = 1\n[poison]\nreplays = 1\n";
    parse_ok(restart_lows);
    let restart_highs = "[restart]\ndelay_ms = 86400000\ninitial_delay_ms = 86400000\n\
                         max_delay_ms = 86400000\nmultiplier = 1000.0\n\
                         reset_after_ms = 86400000\nfailure_interval_ms = 86400000\n";
    parse_ok(restart_highs);
}

#[test]
fn checkpoint_interval_zero_means_off() {
    let config = parse_ok("[checkpoint]\ninterval_ms = 0\n");
    assert_eq!(config.checkpoint.interval(), None);
    let config = parse_ok("[checkpoint]\ninterval_ms = 250\ntimeout_ms = 900\n");
    assert_eq!(
        config.checkpoint.interval(),
        Some(std::time::Duration::from_millis(250))
    );
    assert_eq!(
        config.checkpoint.timeout(),
        std::time::Duration::from_millis(900)
    );
    let err = parse_err("[checkpoint]\ninterval_ms = 5\n");
    assert_eq!(
        err.to_string(),
        "config file node.toml: checkpoint.interval_ms = 5 is invalid: must be 0 \
         (checkpointing off) or between 10 and 86400000"
    );
}

#[test]
fn restart_strategies_are_named_in_kebab_case() {
    for strategy in RestartStrategyName::ALL {
        let text = format!("[restart]\nstrategy = \"{}\"\n", strategy.as_str());
        assert_eq!(parse_ok(&text).restart.strategy, strategy);
        assert_eq!(
            RestartStrategyName::from_name(strategy.as_str()),
            Some(strategy)
        );
    }
    assert_eq!(RestartStrategyName::from_name("fixed_delay"), None);
    let ConfigError::Parse { message, .. } = parse_err("[restart]\nstrategy = \"fixed_delay\"")
    else {
        panic!("expected Parse");
    };
    assert!(message.contains("in key `restart.strategy`"), "{message}");
    for name in [
        "`none`",
        "`fixed-delay`",
        "`exponential-backoff`",
        "`failure-rate`",
    ] {
        assert!(message.contains(name), "{name} missing from: {message}");
    }
}

#[test]
fn an_integer_multiplier_is_accepted() {
    assert_eq!(
        parse_ok("[restart]\nmultiplier = 3\n").restart.multiplier,
        3.0
    );
}

#[test]
fn restart_cross_rules_apply_only_to_the_strategy_that_reads_both_keys() {
    // max_delay below initial_delay is only a contradiction for exponential backoff.
    let backwards = "initial_delay_ms = 500\nmax_delay_ms = 100\n";
    for strategy in ["none", "fixed-delay", "failure-rate"] {
        parse_ok(&format!(
            "[restart]\nstrategy = \"{strategy}\"\n{backwards}"
        ));
    }
    let err = parse_err(&format!(
        "[restart]\nstrategy = \"exponential-backoff\"\n{backwards}"
    ));
    assert_eq!(
        err.to_string(),
        "config file node.toml: restart.max_delay_ms = 100 is invalid: must not be less than \
         restart.initial_delay_ms (500) with the exponential-backoff strategy"
    );
    parse_ok("[restart]\nstrategy = \"exponential-backoff\"\ninitial_delay_ms = 100\nmax_delay_ms = 100\n");

    // A failure-rate window the restarts can never fill.
    let slow = "delay_ms = 30000\nmax_failures = 3\nfailure_interval_ms = 60000\n";
    for strategy in ["none", "fixed-delay", "exponential-backoff"] {
        parse_ok(&format!("[restart]\nstrategy = \"{strategy}\"\n{slow}"));
    }
    let err = parse_err(&format!("[restart]\nstrategy = \"failure-rate\"\n{slow}"));
    assert_eq!(err.key(), Some("restart.delay_ms"));
    let message = err.to_string();
    assert!(message.contains("restart forever"), "{message}");
    // Exactly filling the window is fine.
    parse_ok(
        "[restart]\nstrategy = \"failure-rate\"\ndelay_ms = 20000\nmax_failures = 3\n\
         failure_interval_ms = 60000\n",
    );
}

#[test]
fn zero_attempts_or_replays_point_at_the_switch_instead() {
    let message = parse_err("[restart]\nattempts = 0\n").to_string();
    assert!(message.contains("restart.strategy = \"none\""), "{message}");
    let message = parse_err("[poison]\nreplays = 0\n").to_string();
    assert!(message.contains("poison.enabled = false"), "{message}");
}

#[test]
fn savepoints_default_to_a_directory_inside_the_state_directory() {
    let state = std::path::Path::new("/data/weir");
    let config = WeirConfig::default();
    assert_eq!(
        config.savepoint.effective_dir(state),
        PathBuf::from("/data/weir/savepoints")
    );
    let config = parse_ok("[savepoint]\ndir = \"/backup/sp\"\n");
    assert_eq!(
        config.savepoint.effective_dir(state),
        PathBuf::from("/backup/sp")
    );
}

#[test]
fn keys_shared_between_sections_are_named_with_their_section() {
    let cases = [
        (
            "[checkpoint]\ninterval_ms = \"x\"\n",
            "checkpoint.interval_ms",
        ),
        ("[poison]\nenabled = 1\n", "poison.enabled"),
        ("[savepoint]\ndir = 3\n", "savepoint.dir"),
        ("[restart]\nmultiplier = \"2\"\n", "restart.multiplier"),
    ];
    assert_parse_errors_name_keys(&cases);
}

#[test]
fn the_shipped_example_file_is_the_rendered_defaults_on_two_workers() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/ops/weir.toml");
    let text = std::fs::read_to_string(path).expect("read ops/weir.toml");
    let mut want = WeirConfig::default();
    want.engine.workers = 2;
    assert_eq!(parse_ok(&text), want);
    assert_eq!(
        text,
        want.to_toml_string(),
        "ops/weir.toml is out of date; regenerate it with `weir config --print-default` \
         and workers = 2"
    );
}

#[test]
fn invalid_message_has_the_documented_form() {
    let err = parse_err("[engine]\nkey_partitions = 0\n");
    assert_eq!(
        err.to_string(),
        "config file node.toml: engine.key_partitions = 0 is invalid: must be between 1 and 65536"
    );
    assert_eq!(err.key(), Some("engine.key_partitions"));
}

#[test]
fn parallelism_above_key_partitions_names_parallelism() {
    let err = parse_err("[engine]\nparallelism = 200\nkey_partitions = 100\n");
    assert_eq!(err.key(), Some("engine.parallelism"));
    let message = err.to_string();
    assert!(message.contains("engine.key_partitions (100)"), "{message}");
}

#[test]
fn unset_parallelism_follows_workers_but_stays_within_key_partitions() {
    let config = parse_ok("[engine]\nworkers = 6\n");
    assert_eq!(config.engine.parallelism, None);
    assert_eq!(config.engine.effective_parallelism(), 6);

    // A many-core machine with default settings must still be valid.
    let config = parse_ok("[engine]\nworkers = 500\nkey_partitions = 128\n");
    assert_eq!(config.engine.effective_parallelism(), 128);

    let config = parse_ok("[engine]\nworkers = 2\nparallelism = 9\n");
    assert_eq!(config.engine.effective_parallelism(), 9);
}

#[test]
fn unknown_key_is_named_with_the_allowed_keys() {
    let err = parse_err("[engine]\nwrokers = 2\n");
    let ConfigError::Parse { origin, message } = &err else {
        panic!("expected Parse, got {err:?}");
    };
    assert_eq!(origin, "node.toml");
    assert!(message.contains("wrokers"), "{message}");
    assert!(message.contains("in key `engine.wrokers`"), "{message}");
    for allowed in [
        "workers",
        "parallelism",
        "key_partitions",
        "mailbox_capacity",
        "batch_size",
    ] {
        assert!(
            message.contains(allowed),
            "{allowed} missing from: {message}"
        );
    }
    assert!(message.contains("line 2"), "{message}");
    assert!(
        err.to_string().starts_with("config file node.toml: "),
        "{err}"
    );
}

#[test]
fn unknown_section_lists_the_sections() {
    let ConfigError::Parse { message, .. } = parse_err("[engin]\nworkers = 2\n") else {
        panic!("expected Parse");
    };
    assert!(message.contains("engin"), "{message}");
    for section in [
        "engine",
        "state",
        "progress",
        "log",
        "metrics",
        "checkpoint",
        "restart",
        "poison",
        "savepoint",
        "http",
    ] {
        assert!(
            message.contains(section),
            "{section} missing from: {message}"
        );
    }
}

/// Each text fails to parse with an error naming its dotted key.
fn assert_parse_errors_name_keys(cases: &[(&str, &str)]) {
    for (text, key) in cases {
        let ConfigError::Parse { message, .. } = parse_err(text) else {
            panic!("expected Parse for {text:?}");
        };
        assert!(
            message.contains(&format!("in key `{key}`")),
            "for {text:?}: {message}"
        );
    }
}

#[test]
fn wrong_type_names_the_key() {
    let cases = [
        ("[engine]\nworkers = \"two\"\n", "engine.workers"),
        ("[engine]\nbatch_size = -1\n", "engine.batch_size"),
        ("engine.key_partitions = 1.5\n", "engine.key_partitions"),
        ("[progress]\nenabled = \"yes\"\n", "progress.enabled"),
        ("[log]\nformat = \"xml\"\n", "log.format"),
        ("[metrics]\naddr = \"localhost:9464\"\n", "metrics.addr"),
        ("[http]\naddr = \"localhost:8081\"\n", "http.addr"),
        ("[http]\nenabled = 1\n", "http.enabled"),
        ("engine = 3\n", "engine"),
    ];
    assert_parse_errors_name_keys(&cases);
}

#[test]
fn wrong_type_picks_the_right_key_among_several() {
    // Two keys with the same kind of mistake: the one toml reports is named.
    let text = "[engine]\nworkers = \"a\"\nbatch_size = \"a\"\n";
    let ConfigError::Parse { message, .. } = parse_err(text) else {
        panic!("expected Parse");
    };
    assert!(message.contains("line 2"), "{message}");
    assert!(message.contains("in key `engine.workers`"), "{message}");
}

#[test]
fn syntax_error_keeps_the_position() {
    let ConfigError::Parse { message, .. } = parse_err("[engine\nworkers = 2\n") else {
        panic!("expected Parse");
    };
    assert!(message.contains("line 1"), "{message}");
    assert!(!message.contains("in key"), "{message}");
}

#[test]
fn bad_address_explains_the_expected_form() {
    let ConfigError::Parse { message, .. } = parse_err("[metrics]\naddr = \"nowhere\"\n") else {
        panic!("expected Parse");
    };
    assert!(
        message.contains("`nowhere` is not a socket address"),
        "{message}"
    );
}

#[test]
fn ipv6_address_is_accepted_and_round_trips() {
    let config = parse_ok("[metrics]\naddr = \"[::1]:9000\"\n");
    let want: SocketAddr = "[::1]:9000".parse().expect("literal address");
    assert_eq!(config.metrics.addr, want);
    assert_eq!(parse_ok(&config.to_toml_string()), config);
}

#[test]
fn log_format_names_are_lowercase() {
    assert_eq!(
        parse_ok("[log]\nformat = \"json\"").log.format,
        LogFormat::Json
    );
    assert_eq!(
        parse_ok("[log]\nformat = \"text\"").log.format,
        LogFormat::Text
    );
    let ConfigError::Parse { message, .. } = parse_err("[log]\nformat = \"JSON\"") else {
        panic!("expected Parse");
    };
    assert!(
        message.contains("`text`") && message.contains("`json`"),
        "{message}"
    );
}

#[test]
fn rust_log_overrides_the_filter_unless_blank() {
    let log = LogConfig::default();
    assert_eq!(log.effective_filter(None), "info");
    assert_eq!(log.effective_filter(Some("debug")), "debug");
    assert_eq!(log.effective_filter(Some("  ")), "info");
}

#[test]
fn progress_interval_is_a_duration() {
    let config = parse_ok("[progress]\ninterval_ms = 1500\n");
    assert_eq!(
        config.progress.interval(),
        std::time::Duration::from_millis(1500)
    );
}

#[test]
fn command_line_origin_reads_as_such() {
    let mut config = WeirConfig::default();
    config.engine.batch_size = 0;
    let err = match config.validate_with_origin(COMMAND_LINE_ORIGIN) {
        Ok(()) => panic!("batch_size 0 must be rejected"),
        Err(err) => err,
    };
    assert_eq!(
        err.to_string(),
        "command line: engine.batch_size = 0 is invalid: must be between 1 and 1000000"
    );
    assert!(
        matches!(config.validate(), Err(ConfigError::Invalid { ref origin, .. }) if origin == STRING_ORIGIN)
    );
}

#[test]
fn load_reads_a_file_and_uses_its_path_as_origin() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("node.toml");
    std::fs::write(&path, FULL_FILE).expect("write config");
    let config = WeirConfig::load(&path).expect("load full file");
    assert_eq!(config, everything_set());

    std::fs::write(&path, "[engine]\nworkers = 0\n").expect("write config");
    let err = match WeirConfig::load(&path) {
        Ok(config) => panic!("expected an error, got {config:?}"),
        Err(err) => err,
    };
    let ConfigError::Invalid { origin, .. } = &err else {
        panic!("expected Invalid, got {err:?}");
    };
    assert_eq!(origin, &path.display().to_string());
}

#[test]
fn load_of_a_missing_file_names_the_path() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("absent.toml");
    let err = match WeirConfig::load(&path) {
        Ok(config) => panic!("expected an error, got {config:?}"),
        Err(err) => err,
    };
    let ConfigError::Io {
        path: reported,
        source,
    } = &err
    else {
        panic!("expected Io, got {err:?}");
    };
    assert_eq!(reported, &path);
    assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
    let message = err.to_string();
    assert!(message.contains(&path.display().to_string()), "{message}");
}

/// Any configuration that passes validation.
fn valid_config() -> impl Strategy<Value = WeirConfig> {
    let engine = (
        1usize..64,
        1u32..=65_536,
        1usize..=1_000_000,
        1usize..=1_000_000,
    )
        .prop_flat_map(|(workers, key_partitions, mailbox_capacity, batch_size)| {
            let parallelism =
                proptest::option::of(1usize..=usize::try_from(key_partitions).unwrap_or(1));
            parallelism.prop_map(move |parallelism| EngineConfig {
                workers,
                parallelism,
                key_partitions,
                mailbox_capacity,
                batch_size,
            })
        });
    let state = (
        proptest::option::of("[a-zA-Z0-9 _./\\\\'\"-]{1,30}"),
        1usize..10_000_000,
        1u64..=65_536,
        proptest::option::of("[a-z0-9]{3,12}"),
        any::<bool>(),
    )
        .prop_map(
            |(dir, cache_entries, sled_cache_mb, bucket, allow_http)| StateConfig {
                dir: dir.map(PathBuf::from),
                cache_entries,
                sled_cache_mb,
                snapshot_url: bucket.as_ref().map(|b| format!("s3://{b}/weir")),
                s3_endpoint: bucket
                    .as_ref()
                    .map(|_| "https://s3.example.test".to_owned()),
                s3_allow_http: allow_http,
                s3_region: bucket.map(|_| "eu-west-1".to_owned()),
            },
        );
    let progress =
        (any::<bool>(), 50u64..=3_600_000).prop_map(|(enabled, interval_ms)| ProgressConfig {
            enabled,
            interval_ms,
        });
    let log = (
        prop_oneof![Just(LogFormat::Text), Just(LogFormat::Json)],
        "[a-z=,_:\"\\\\ \n]{0,20}[a-z]",
    )
        .prop_map(|(format, filter)| LogConfig { format, filter });
    let metrics = (
        any::<[u8; 4]>(),
        any::<u16>(),
        any::<bool>(),
        any::<bool>(),
        prop_oneof![Just(0u64), 1_000u64..=86_400_000],
    )
        .prop_map(|(ip, port, v6, enabled, state_interval_ms)| {
            let addr = if v6 {
                SocketAddr::from((
                    std::net::Ipv6Addr::from(u128::from(u32::from_be_bytes(ip))),
                    port,
                ))
            } else {
                SocketAddr::from((ip, port))
            };
            MetricsConfig {
                enabled,
                addr,
                state_interval_ms,
            }
        });
    let checkpoint = (
        prop_oneof![Just(0u64), 10u64..=86_400_000],
        1u64..=86_400_000,
        1usize..1000,
        1usize..1000,
    )
        .prop_map(
            |(interval_ms, timeout_ms, retain, compact_after)| CheckpointConfig {
                interval_ms,
                timeout_ms,
                retain,
                compact_after,
            },
        );
    let strategy = prop_oneof![
        Just(RestartStrategyName::None),
        Just(RestartStrategyName::FixedDelay),
        Just(RestartStrategyName::ExponentialBackoff),
        Just(RestartStrategyName::FailureRate),
    ];
    let restart = (
        strategy,
        1u32..1000,
        (0u64..=86_400_000, 0u64..=86_400_000, 0u64..=86_400_000),
        prop_oneof![Just(1.0), Just(2.0), 1.0f64..=1000.0],
        1u64..=86_400_000,
        1u32..1000,
    )
        .prop_map(
            |(strategy, attempts, (delay_ms, a, b), multiplier, reset_after_ms, max_failures)| {
                // Keep the cross-field rules of the chosen strategy satisfied.
                let (initial_delay_ms, max_delay_ms) = (a.min(b), a.max(b));
                let failure_interval_ms = delay_ms
                    .saturating_mul(u64::from(max_failures))
                    .clamp(1, 86_400_000);
                let delay_ms = delay_ms.min(failure_interval_ms / u64::from(max_failures));
                RestartConfig {
                    strategy,
                    attempts,
                    delay_ms,
                    initial_delay_ms,
                    max_delay_ms,
                    multiplier,
                    reset_after_ms,
                    max_failures,
                    failure_interval_ms,
                }
            },
        );
    let poison =
        (any::<bool>(), 1u32..100).prop_map(|(enabled, replays)| PoisonConfig { enabled, replays });
    let savepoint =
        proptest::option::of("[a-zA-Z0-9 _./\\\\'\"-]{1,30}").prop_map(|dir| SavepointConfig {
            dir: dir.map(PathBuf::from),
        });
    let http = (
        any::<bool>(),
        any::<[u8; 4]>(),
        any::<u16>(),
        proptest::option::of("[a-zA-Z0-9_./-]{1,30}"),
    )
        .prop_map(|(enabled, ip, port, token_file)| HttpConfig {
            enabled,
            addr: SocketAddr::from((ip, port)),
            token_file: token_file.map(PathBuf::from),
        });
    let table = || {
        proptest::collection::btree_map(
            prop_oneof![
                Just("client.id"),
                Just("linger.ms"),
                Just("socket.timeout.ms"),
                Just("sasl.username"),
            ],
            prop_oneof![
                "[a-zA-Z0-9 _./\\\\'\"-]{1,12}".prop_map(|s| s),
                (1000u32..100_000).prop_map(|n| n.to_string()),
            ],
            0..3,
        )
        .prop_map(|m| {
            // linger.ms and socket.timeout.ms must be numbers to please librdkafka.
            KafkaSettings(
                m.into_iter()
                    .map(|(k, v)| {
                        let numeric = k.ends_with(".ms");
                        let in_range = v
                            .parse::<u32>()
                            .is_ok_and(|n| (1000..=100_000).contains(&n));
                        let v = if numeric && !in_range {
                            "1000".to_owned()
                        } else {
                            v
                        };
                        (k.to_owned(), v)
                    })
                    .collect(),
            )
        })
    };
    let kafka = (
        proptest::option::of("[a-z0-9.-]{1,12}:[0-9]{1,4}"),
        table(),
        table(),
        table(),
    )
        .prop_map(|(brokers, settings, consumer, producer)| KafkaConfig {
            brokers,
            settings,
            consumer,
            producer,
        });
    (
        (engine, state, progress, log, metrics),
        (checkpoint, restart, poison, savepoint, http, kafka),
    )
        .prop_map(
            |(
                (engine, state, progress, log, metrics),
                (checkpoint, restart, poison, savepoint, http, kafka),
            )| {
                WeirConfig {
                    engine,
                    state,
                    progress,
                    log,
                    metrics,
                    checkpoint,
                    restart,
                    poison,
                    savepoint,
                    http,
                    kafka,
                }
            },
        )
}

proptest! {
    #[test]
    fn any_valid_config_round_trips(config in valid_config()) {
        prop_assert_eq!(config.validate().map_err(|e| e.to_string()), Ok(()));
        let rendered = config.to_toml_string();
        let parsed = WeirConfig::from_toml_str(&rendered, STRING_ORIGIN)
            .map_err(|e| format!("{e}\n--- rendered ---\n{rendered}"));
        prop_assert_eq!(parsed, Ok(config));
    }

    #[test]
    fn key_partition_rule_matches_its_definition(
        key_partitions in 0u32..70_000,
        parallelism in proptest::option::of(0usize..70_000),
    ) {
        let mut config = WeirConfig::default();
        config.engine.key_partitions = key_partitions;
        config.engine.parallelism = parallelism;
        let partitions_ok = (1..=65_536).contains(&key_partitions);
        let parallelism_ok = parallelism
            .is_none_or(|p| p >= 1 && p <= usize::try_from(key_partitions).unwrap_or(0));
        prop_assert_eq!(config.validate().is_ok(), partitions_ok && parallelism_ok);
        if !(partitions_ok && parallelism_ok) {
            let err = config.validate().err();
            let key = err.as_ref().and_then(ConfigError::key);
            let want = if parallelism == Some(0) || partitions_ok {
                "engine.parallelism"
            } else {
                "engine.key_partitions"
            };
            prop_assert_eq!(key, Some(want));
        }
    }
}

#[test]
fn jobs_build_kafka_clients_from_the_section_or_are_told_what_is_missing() {
    use crate::connector::kafka::{KafkaOutput, Utf8Text};
    let none = KafkaConfig::default();
    let err = none
        .source(["t"], Utf8Text, crate::connector::DeadLetters::to_log())
        .err()
        .unwrap_or_default();
    assert!(
        err.contains("kafka.brokers") && err.contains("--kafka-brokers"),
        "{err}"
    );
    assert!(none.sink("t", |_: &u64| KafkaOutput::default()).is_err());
    let set = parse_ok("[kafka]\nbrokers = \"127.0.0.1:9\"\n").kafka;
    assert!(set
        .source(["t"], Utf8Text, crate::connector::DeadLetters::to_log())
        .is_ok());
    assert!(set.sink("t", |_: &u64| KafkaOutput::default()).is_ok());
}

#[test]
fn snapshot_store_keys_are_checked_with_their_key() {
    for (text, key, wanted) in [
        (
            "[state]\nsnapshot_url = \"gs://b/x\"",
            "state.snapshot_url",
            "expected file:///dir",
        ),
        (
            "[state]\nsnapshot_url = \"file://rel\"",
            "state.snapshot_url",
            "absolute path",
        ),
        (
            "[state]\nsnapshot_url = \"file:///s\"\ns3_endpoint = \"https://x\"",
            "state.s3_endpoint",
            "only applies to an s3://",
        ),
        (
            "[state]\nsnapshot_url = \"s3://bkt/p\"\ns3_endpoint = \"http://127.0.0.1:9\"",
            "state.s3_endpoint",
            "s3_allow_http",
        ),
        (
            "[state]\nsnapshot_url = \"s3://bkt/p\"\ns3_endpoint = \"ftp://x\"",
            "state.s3_endpoint",
            "http:// or https://",
        ),
        (
            "[state]\ns3_region = \"eu-west-1\"",
            "state.s3_region",
            "s3://",
        ),
    ] {
        let err = parse_err(text);
        let shown = err.to_string();
        assert!(
            shown.contains(key) && shown.contains(wanted),
            "{text}: {shown}"
        );
    }
    let ok = parse_ok(
        "[state]\nsnapshot_url = \"s3://bkt/p\"\ns3_endpoint = \"http://127.0.0.1:9\"\ns3_allow_http = true",
    );
    let spec = ok.state.snapshot_store().expect("a spec");
    assert_eq!(spec.url.to_string(), "s3://bkt/p");
    assert_eq!(spec.s3_endpoint.as_deref(), Some("http://127.0.0.1:9"));
    assert!(spec.s3_allow_http && spec.s3_credentials.is_none());
    assert!(parse_ok("").state.snapshot_store().is_none());
}
