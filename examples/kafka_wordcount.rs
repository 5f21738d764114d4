//! Kafka to Kafka word count, exactly once across restarts.
//!
//!     cargo run --release --example kafka_wordcount -- \
//!         --brokers 127.0.0.1:9092 --input lines --output counts \
//!         --state-dir /var/lib/kafka-wordcount [--exactly-once]
//!
//! Each input record's value is a line of words separated by spaces. For every word
//! it emits a record whose key is the word and whose value is its running count as
//! decimal text. It runs until interrupted (Ctrl-C or SIGTERM); started again with the
//! same state directory it resumes from its last complete checkpoint: the offsets it
//! had read, the counts it had, and (with `--exactly-once`) the output it had
//! committed, so every word's counts continue without a gap or a repeat.
//!
//! - Checkpoints go to the state directory (every second unless
//!   `--checkpoint-interval-ms` says otherwise; they cannot be turned off here).
//! - `--exactly-once` writes through Kafka transactions committed when a checkpoint
//!   completes (read the output with `isolation.level=read_committed`); without it the
//!   output is at-least-once (after a restart, records since the last checkpoint are
//!   written again).
//! - Values that are not UTF-8 go to the dead letters (`<state dir>/dead-letters.jsonl`
//!   unless `--dead-letters` names another file), with topic, partition and offset.
//! - Every engine flag of `weir run` works too, and so does a config file
//!   (`--config`, its `[kafka]` section); `--brokers` is `--kafka-brokers`, and
//!   `--kafka-set KEY=VALUE` passes librdkafka settings (SASL, compression, ...).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use weir::cli::EngineArgs;
use weir::connector::kafka::{Delivery, KafkaOutput, KafkaRecord, Utf8Text};
use weir::job::node::RunControl;
use weir::prelude::*;
use weir::JobError;
use weir_actors::JobFailure;

/// Kafka to Kafka word count: running count per word, exactly once across restarts.
#[derive(Parser, Debug)]
#[command(name = "kafka_wordcount")]
struct Args {
    /// The Kafka cluster (host:port[,host:port...]); default: kafka.brokers of the
    /// config file.
    #[arg(long, value_name = "HOST:PORT")]
    brokers: Option<String>,
    /// The topic of text lines to read.
    #[arg(long, value_name = "TOPIC")]
    input: String,
    /// The topic the running counts go to (key: the word; value: the count).
    #[arg(long, value_name = "TOPIC")]
    output: String,
    /// Write the output through Kafka transactions, committed per checkpoint.
    #[arg(long)]
    exactly_once: bool,
    /// The consumer group the input offsets of completed checkpoints are committed
    /// to, for lag tools (recovery never reads them).
    #[arg(long, value_name = "GROUP", default_value = "kafka-wordcount")]
    group: String,
    /// Where undecodable input goes (JSON lines); default
    /// `<state dir>/dead-letters.jsonl`.
    #[arg(long, value_name = "PATH")]
    dead_letters: Option<PathBuf>,
    /// Engine options (`--state-dir` is required).
    #[command(flatten)]
    engine: EngineArgs,
}

/// The default checkpoint interval when neither the flag nor the file sets one.
const DEFAULT_CHECKPOINT_MS: u64 = 1_000;

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("kafka_wordcount: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let mut engine = args.engine;
    if args.brokers.is_some() {
        engine.kafka_brokers = args.brokers;
    }
    let mut config = engine.resolve()?;
    let state_dir = config
        .state
        .dir
        .clone()
        .ok_or("--state-dir DIR is required: checkpoints and counts are kept there")?;
    if config.checkpoint.interval_ms == 0 {
        config.checkpoint.interval_ms = DEFAULT_CHECKPOINT_MS;
    }
    std::fs::create_dir_all(&state_dir).map_err(|e| {
        format!(
            "cannot create the state directory {}: {e}",
            state_dir.display()
        )
    })?;
    let dead_letters_path = args
        .dead_letters
        .unwrap_or_else(|| state_dir.join("dead-letters.jsonl"));
    let dead_letters = DeadLetters::to_file(&dead_letters_path).map_err(|e| {
        format!(
            "cannot open the dead-letter file {}: {e}",
            dead_letters_path.display()
        )
    })?;

    let source = config
        .kafka
        .source([args.input.as_str()], Utf8Text, dead_letters.clone())?
        .group_id(args.group);
    let delivery = if args.exactly_once {
        Delivery::ExactlyOnce
    } else {
        Delivery::AtLeastOnce
    };
    let sink = config
        .kafka
        .sink(args.output.as_str(), |r: &(String, u64)| KafkaOutput {
            key: Some(r.0.as_bytes().to_vec()),
            value: Some(r.1.to_string().into_bytes()),
            ..KafkaOutput::default()
        })?
        .delivery(delivery)
        .id(format!("kafka-wordcount-{}", args.output));

    let job = Job::new("kafka-wordcount")
        .source(source)
        .flat_map(
            |line: KafkaRecord<String>, out: &mut Emitter<'_, (String, u64)>| {
                for word in line.value.split(' ').filter(|w| !w.is_empty()) {
                    out.emit((word.to_owned(), 1));
                }
            },
        )
        .group_by_key()
        .reduce(|count, one| count + one)
        .sink(sink);

    let node = Node::new(EngineOptions::from_config(&config))?;
    eprintln!(
        "kafka_wordcount: {} -> {} ({}), state in {}; Ctrl-C or SIGTERM to stop",
        args.input,
        args.output,
        if args.exactly_once {
            "exactly once"
        } else {
            "at least once"
        },
        state_dir.display()
    );
    // No stop flag: an interrupt cancels the job, which keeps its checkpoints, so
    // the next start resumes from the newest complete one (a stop flag would end the
    // input and finish the job, and a finished job starts from the beginning).
    let control = RunControl {
        handle_ctrl_c: true,
        handle_sigterm: true,
        handle_signals: true,
        ..Default::default()
    };
    match node.run_with(job, control) {
        Ok(report) => {
            eprint!("{report}");
            Ok(ExitCode::SUCCESS)
        }
        Err(JobError::Failed(JobFailure::Cancelled { .. })) => {
            eprintln!(
                "kafka_wordcount: stopped; start again with --state-dir {} to resume",
                state_dir.display()
            );
            if dead_letters.count() > 0 {
                eprintln!(
                    "kafka_wordcount: {} undecodable records went to {}",
                    dead_letters.count(),
                    dead_letters_path.display()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => Err(e.into()),
    }
}
