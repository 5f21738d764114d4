//! The `weir` command line as a library function: the `weir` binary is
//! `app::main_with(JobRegistry::new())`, and a user's own binary, which compiles its
//! operators in, registers its job definitions by name and calls the same function
//! to get every command (`weir run NAME --set key=value`, `weir bench`,
//! `weir config`).
//!
//! ```no_run
//! use weir::app::{self, JobParams, JobRegistry};
//! use weir::prelude::*;
//!
//! fn main() -> std::process::ExitCode {
//!     let mut jobs = JobRegistry::new();
//!     jobs.register("lengths", "line lengths of W1's text", |p: &JobParams| {
//!         Ok(Job::new("lengths")
//!             .source(W1Lines::new(p.get_or("n", 1_000)?))
//!             .map(|line: String| (line.len() as u64, 1u64))
//!             .group_by_key()
//!             .reduce(|a, b| a + b)
//!             .sink(StdoutSink::new(tab_separated)))
//!     })
//!     .expect("a new name");
//!     app::main_with(jobs) // `my-binary run lengths --set n=5000`
//! }
//! ```

pub mod client;
pub mod registry;
pub mod service;

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, ValueEnum};

use crate::cli::{
    BenchArgs, Cli, Command, ConfigArgs, JobArgs, JobCommand, JobName, NodeArgs, RunArgs, Workload,
};
use crate::config::{LogFormat, WeirConfig};
use crate::connector::kafka::{KafkaRecord, KafkaSource, Utf8Text};
use crate::connector::lines::LineSource;
use crate::connector::DeadLetters;
use crate::job::node::RunControl;
use crate::job::progress::human;
use crate::status::StatusServer;
use crate::{EngineOptions, Node};

pub use registry::{JobDefinition, JobParams, JobRegistry, RegistryError, BUILT_IN_JOBS};

/// Runs the `weir` command line of this process's arguments with `registry`'s
/// jobs besides the built-in ones, and returns the exit code (errors are printed).
pub fn main_with(registry: JobRegistry) -> ExitCode {
    main_from(registry, std::env::args_os())
}

/// [`main_with`] on the given arguments (the first is the program name).
pub fn main_from<I, T>(registry: JobRegistry, args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    match run(cli, &registry) {
        Ok(code) => code,
        Err(e) => {
            if crate::console::is_json() {
                tracing::error!(target: "weir::console", error = %e, "weir stopped with an error");
            } else {
                eprintln!("error: {e}");
            }
            ExitCode::FAILURE
        }
    }
}

type Error = Box<dyn std::error::Error>;

fn init_logging(config: &WeirConfig) {
    let rust_log = std::env::var("RUST_LOG").ok();
    let filter =
        tracing_subscriber::EnvFilter::try_new(config.log.effective_filter(rust_log.as_deref()))
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match config.log.format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
    crate::console::set_json(config.log.format == LogFormat::Json);
}

/// Serves Prometheus metrics while the returned server lives, when enabled.
fn start_metrics(config: &WeirConfig) -> Result<Option<crate::metrics::MetricsServer>, Error> {
    if !config.metrics.enabled {
        return Ok(None);
    }
    Ok(Some(crate::metrics::install(config.metrics.addr)?))
}

fn run(cli: Cli, registry: &JobRegistry) -> Result<ExitCode, Error> {
    match cli.command {
        Command::Run(args) => run_job(*args, registry),
        Command::Bench(args) => bench(*args),
        Command::Config(args) => config(args),
        Command::Node(args) => node(*args, registry),
        Command::Job(args) => job_command(args),
    }
}

/// `weir node`: serves the API with the job service until Ctrl-C or SIGTERM, then
/// cancels the running jobs and waits for them.
fn node(args: NodeArgs, registry: &JobRegistry) -> Result<ExitCode, Error> {
    let config = args.resolve()?;
    init_logging(&config);
    let _metrics = start_metrics(&config)?;
    let options = EngineOptions::from_config(&config);
    let key_partitions = options.key_partitions;
    let node = Node::new(options)?;
    let board = node.status();
    let service = service::JobService::new(node, registry.clone());
    let token = api_token(&config)?;
    let coordinator = coordinator_of(&args)?;
    let node_id = args.node_id.clone().unwrap_or_else(host_name);
    let agent = crate::cluster::agent::ClusterAgent::start(
        coordinator,
        crate::cluster::agent::AgentConfig {
            node: crate::cluster::NodeId::new(node_id.clone()),
            address: config.http.addr.to_string(),
            ttl: Duration::from_millis(args.lease_ms.max(1000)),
            poll: Duration::from_millis((args.lease_ms / 6).clamp(50, 1000)),
            key_partitions,
        },
    )?;
    let server = StatusServer::start_node(
        config.http.addr,
        board,
        token,
        Some(std::sync::Arc::new(service.clone())),
        Some(agent.shared_view()),
    )?;
    crate::console::notice(&format!(
        "node '{node_id}' in cluster '{}' ({})",
        args.cluster, args.coordinator
    ));
    crate::console::notice(&format!(
        "node API and status page on http://{}/",
        server.local_addr()
    ));
    crate::console::notice(&format!(
        "job definitions: {}",
        service
            .definitions()
            .into_iter()
            .map(|(name, _)| name)
            .collect::<Vec<_>>()
            .join(", ")
    ));
    wait_for_termination()?;
    crate::console::notice("stopping: cancelling the running jobs");
    service.shutdown();
    drop(agent);
    Ok(ExitCode::SUCCESS)
}

/// The node's API token: `WEIR_HTTP_TOKEN`, else `http.token_file`'s contents.
fn api_token(config: &WeirConfig) -> Result<Option<crate::status::auth::ApiToken>, Error> {
    let token = crate::status::auth::resolve_token(
        std::env::var(crate::status::auth::TOKEN_ENV).ok(),
        config.http.token_file.as_deref(),
    )
    .map_err(crate::status::StatusError::from)?;
    Ok(token)
}

/// The coordinator `--coordinator` names.
fn coordinator_of(
    args: &NodeArgs,
) -> Result<std::sync::Arc<dyn crate::cluster::Coordinator>, Error> {
    if args.coordinator == "embedded" {
        return Ok(std::sync::Arc::new(
            crate::cluster::EmbeddedCoordinator::new(),
        ));
    }
    let Some(rest) = args.coordinator.strip_prefix("etcd://") else {
        return Err(format!(
            "--coordinator '{}': expected `embedded` or etcd://HOST:PORT",
            args.coordinator
        )
        .into());
    };
    let endpoint = format!("http://{rest}");
    Ok(std::sync::Arc::new(crate::cluster::EtcdCoordinator::new(
        &endpoint,
        &format!("/{}", args.cluster.trim_matches('/')),
    )?))
}

/// The machine's host name (the default node id).
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "weir-node".to_string())
}

/// Blocks until Ctrl-C or SIGTERM.
fn wait_for_termination() -> Result<(), Error> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        #[cfg(unix)]
        {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
            tokio::select! {
                r = tokio::signal::ctrl_c() => r,
                _ = term.recv() => Ok(()),
            }
        }
        #[cfg(not(unix))]
        {
            tokio::signal::ctrl_c().await
        }
    })?;
    Ok(())
}

/// `weir job ...`: one request to the node's API; prints its JSON answer and fails
/// (exit code 1) when the node refused.
fn job_command(args: JobArgs) -> Result<ExitCode, Error> {
    let token = match std::env::var(crate::status::auth::TOKEN_ENV) {
        Ok(t) if !t.trim().is_empty() => Some(t),
        _ => match &args.token_file {
            Some(path) => Some(
                std::fs::read_to_string(path)
                    .map_err(|e| format!("cannot read the token file {}: {e}", path.display()))?
                    .trim()
                    .to_string(),
            ),
            None => None,
        },
    };
    let client = client::NodeClient::new(&args.node, token)?;
    let (status, answer) = match &args.command {
        JobCommand::Submit { definition, params } => {
            let params = JobParams::parse(params)?;
            client.request(
                "POST",
                "/api/jobs",
                Some(&serde_json::json!({ "definition": definition, "params": params.values() })),
            )?
        }
        JobCommand::List => client.request("GET", "/api/jobs", None)?,
        JobCommand::Definitions => client.request("GET", "/api/definitions", None)?,
        JobCommand::Cancel { job } => {
            client.request("DELETE", &format!("/api/jobs/{job}"), None)?
        }
        JobCommand::Savepoint { job, stop } => client.request(
            "POST",
            &format!("/api/jobs/{job}/savepoints?stop={stop}"),
            None,
        )?,
    };
    println!("{}", serde_json::to_string_pretty(&answer)?);
    if (200..300).contains(&status) {
        Ok(ExitCode::SUCCESS)
    } else {
        let reason = answer["error"].as_str().unwrap_or("(no reason given)");
        Err(format!("the node answered {status}: {reason}").into())
    }
}

fn config(args: ConfigArgs) -> Result<ExitCode, Error> {
    if let Some(path) = args.check {
        WeirConfig::load(&path)?;
        println!("{}: ok", path.display());
    } else {
        print!("{}", WeirConfig::default().to_toml_string());
    }
    Ok(ExitCode::SUCCESS)
}

fn run_job(args: RunArgs, registry: &JobRegistry) -> Result<ExitCode, Error> {
    let config = args.resolve()?;
    init_logging(&config);
    let _metrics = start_metrics(&config)?;
    let node = Node::new(args.engine_options(&config))?;
    let board = node.status();
    let _status_server = if config.http.enabled {
        let token = api_token(&config)?;
        let server = StatusServer::start(config.http.addr, board.clone(), token)?;
        crate::console::notice(&format!(
            "status API and page on http://{}/",
            server.local_addr()
        ));
        Some(server)
    } else {
        None
    };
    // The cluster of the Kafka flags: kafka.brokers (or --kafka-brokers).
    let kafka_brokers = config.kafka.require_brokers();
    let dead_letters = match (&args.dead_letters, &args.kafka_dead_letter_topic) {
        (Some(path), _) => DeadLetters::to_file(path)
            .map_err(|e| format!("cannot open dead-letter file {}: {e}", path.display()))?,
        (None, Some(topic)) => {
            let bootstrap = kafka_brokers.clone()?;
            DeadLetters::to_kafka_with(bootstrap, topic, config.kafka.producer_settings())?
        }
        (None, None) => DeadLetters::to_log(),
    };
    let Ok(builtin) = JobName::from_str(&args.job, true) else {
        return run_registered(&args, registry, node, dead_letters);
    };
    if !args.params.is_empty() {
        return Err(format!(
            "--set is for registered jobs; the built-in job '{}' takes its own flags",
            args.job
        )
        .into());
    }
    match builtin {
        JobName::Demo => {
            let stop = crate::connector::StopFlag::new();
            let (job, sink) = crate::jobs::demo(stop.clone(), args.limit);
            crate::console::notice(
                "demo: sensor readings -> key by sensor -> running summary; Ctrl-C to stop",
            );
            let report = node.run_with(
                job,
                RunControl {
                    stop: Some(stop),
                    duration: args.duration.map(Duration::from_secs_f64),
                    handle_ctrl_c: true,
                    handle_signals: true,
                    ..Default::default()
                },
            )?;
            let result = sink.result();
            let mut sensors: Vec<_> = result.last.into_iter().collect();
            sensors.sort_by(|a, b| b.1.count.cmp(&a.1.count).then(a.0.cmp(&b.0)));
            let mut out = std::io::stdout().lock();
            writeln!(out, "sensor\treadings\tmean\tmin\tmax")?;
            for (sensor, s) in sensors.iter().take(10) {
                writeln!(
                    out,
                    "{sensor}\t{}\t{:.1}\t{:.1}\t{:.1}",
                    s.count, s.mean, s.min, s.max
                )?;
            }
            print_report(&report);
            crate::console::notice(&format!(
                "{} readings from {} sensors, {}/s",
                result.received,
                sensors.len(),
                human(result.received as f64 / report.elapsed.as_secs_f64().max(1e-9))
            ));
        }
        JobName::Wordcount => {
            let control = || RunControl {
                handle_ctrl_c: false,
                handle_signals: true,
                ..Default::default()
            };
            if let (Some(topic), Some(dir)) = (&args.kafka_topic, &args.output_dir) {
                let mut source = KafkaSource::new(
                    kafka_brokers.clone()?,
                    [topic.as_str()],
                    Utf8Text,
                    dead_letters.clone(),
                )
                .stop_at_end(true)
                .settings(config.kafka.consumer_settings());
                if let Some(group) = &args.kafka_group {
                    source = source.group_id(group.clone());
                }
                let job = crate::jobs::wordcount_of_to_dir(
                    source,
                    |record: KafkaRecord<String>| record.value,
                    dir,
                );
                let report = node.run_with(job, control())?;
                eprint!("{report}");
                return Ok(ExitCode::SUCCESS);
            }
            let source = match &args.input {
                Some(path) => LineSource::file(path, dead_letters.clone()),
                None => LineSource::stdin(dead_letters.clone()),
            };
            if let Some(dir) = &args.output_dir {
                let report =
                    node.run_with(crate::jobs::wordcount_to_dir(source, dir), control())?;
                print_report(&report);
                return Ok(ExitCode::SUCCESS);
            }
            let (job, sink) = crate::jobs::wordcount(source);
            let report = node.run_with(job, control())?;
            let mut counts: Vec<_> = sink.result().last.into_iter().collect();
            counts.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
            let mut text = String::new();
            for (word, count) in &counts {
                text.push_str(word);
                text.push('\t');
                text.push_str(&count.to_string());
                text.push('\n');
            }
            match &args.output {
                Some(path) => std::fs::write(path, text)
                    .map_err(|e| format!("cannot write {}: {e}", path.display()))?,
                None => std::io::stdout().lock().write_all(text.as_bytes())?,
            }
            print_report(&report);
            if dead_letters.count() > 0 {
                crate::console::notice(&format!(
                    "{} undecodable lines went to the dead-letter output",
                    dead_letters.count()
                ));
            }
        }
        JobName::W1 | JobName::W2 => {
            let options = EngineOptions::from_config(&config);
            let result = if builtin == JobName::W1 {
                crate::bench::w1::run(options, args.n)?
            } else {
                crate::bench::w2::run(options, args.n, None)?
            };
            println!("{}", result.to_json());
            if !result.passed() {
                return Ok(ExitCode::from(2));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `weir run NAME` of a job the binary registered: built from its `--set`
/// parameters, run until its input ends (Ctrl-C ends the input, a second one
/// cancels; SIGUSR1/2 take savepoints).
fn run_registered(
    args: &RunArgs,
    registry: &JobRegistry,
    node: Node,
    dead_letters: DeadLetters,
) -> Result<ExitCode, Error> {
    let params = JobParams::parse(&args.params)?;
    if !registry.contains(&args.job) {
        let mut known: Vec<&str> = BUILT_IN_JOBS.to_vec();
        known.extend(registry.definitions().map(|(name, _)| name));
        return Err(format!("no job named '{}' (jobs: {})", args.job, known.join(", ")).into());
    }
    let job = registry.build(&args.job, &params)?;
    let node = node.with_dead_letters(dead_letters);
    let report = node.run_with(
        job,
        RunControl {
            handle_ctrl_c: true,
            handle_signals: true,
            duration: args.duration.map(Duration::from_secs_f64),
            ..Default::default()
        },
    )?;
    print_report(&report);
    Ok(ExitCode::SUCCESS)
}

/// The job's summary on stderr (as one log event when the logs are JSON).
fn print_report(report: &crate::job::report::JobReport) {
    if crate::console::is_json() {
        tracing::info!(target: "weir::console", job = %report.job,
            elapsed_s = report.elapsed.as_secs_f64(), restarts = report.restarts,
            records_read = report.records_read(), summary = %report, "job finished");
    } else {
        eprint!("{report}");
    }
}

fn bench(args: BenchArgs) -> Result<ExitCode, Error> {
    let config = args.engine.resolve()?;
    init_logging(&config);
    let _metrics = start_metrics(&config)?;
    let options = EngineOptions::from_config(&config);
    let result = match args.workload {
        Workload::KafkaW1 => return kafka_bench(options, &config, &args),
        Workload::W1 => crate::bench::w1::run(options, args.n)?,
        Workload::W2 => crate::bench::w2::run(
            options,
            args.n,
            args.watermark_alignment_ms
                .map(std::time::Duration::from_millis),
        )?,
    };
    println!("{}", result.to_json());
    Ok(if result.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}

/// `weir bench kafka-w1`: three JSON lines (raw produce, raw consume, the job).
fn kafka_bench(
    options: EngineOptions,
    config: &WeirConfig,
    args: &BenchArgs,
) -> Result<ExitCode, Error> {
    let bootstrap = config
        .kafka
        .require_brokers()
        .map_err(|e| format!("bench kafka-w1: {e}"))?;
    let bench = crate::bench::kafka::KafkaBench {
        bootstrap: bootstrap.to_owned(),
        topic: args.kafka_topic.clone(),
        partitions: args.kafka_partitions,
        output_topic: args.kafka_output_topic.clone(),
        delivery: args.kafka_delivery.into(),
        n: args.n,
    };
    let results = crate::bench::kafka::run(options, &bench)?;
    for result in &results {
        println!("{}", result.to_json());
    }
    Ok(if results.iter().all(|r| r.passed()) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}
