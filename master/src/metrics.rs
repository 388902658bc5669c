//! The master's metrics, for Prometheus: counters and histograms updated
//! where things happen (requests in `Master::handle`, connections in
//! `server`, flushes in `journal`, copies in the replication monitor), and
//! gauges set from the registry when they are rendered. `render` writes
//! them all in the text exposition format (OpenMetrics, which Prometheus
//! reads), for an HTTP front to serve as `/metrics`.
//!
//! Every update is an atomic operation or a short lock of one histogram;
//! labels come from fixed sets (request kinds, error kinds, minion states,
//! refusal reasons), so the number of series is bounded.

use std::time::Duration;

use dfs_engine::msg::{ErrorKind, MasterRequest, MasterResponse, MinionReport, MinionState};
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::replication::PlanSummary;

/// Latency buckets of requests: 50 µs doubling to about 13 s.
/// The content type `/metrics` answers with (the text `render` writes).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

const REQUEST_BUCKET_START_SECONDS: f64 = 0.000_05;
const REQUEST_BUCKETS: u16 = 19;
/// Latency buckets of journal flushes: 50 µs doubling to about 1.6 s.
const FLUSH_BUCKET_START_SECONDS: f64 = 0.000_05;
const FLUSH_BUCKETS: u16 = 16;
/// Records per flush: 1 doubling to 4096.
const GROUP_BUCKETS: u16 = 13;

/// A request kind: the `MasterRequest` variant's name.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OpLabels {
    op: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: &'static str,
}

/// Why the server refused a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// At a connection limit (the master's or the peer address's).
    Busy,
    /// The address failed to prove the cluster key too often lately.
    AuthLimited,
}

impl Refusal {
    fn label(self) -> &'static str {
        match self {
            Refusal::Busy => "busy",
            Refusal::AuthLimited => "auth_limited",
        }
    }
}

/// The journal's flush histograms: the journal records into them (it is
/// opened before the rest of the metrics), `Metrics` renders them.
#[derive(Clone, Debug)]
pub struct FlushMetrics {
    seconds: Histogram,
    records: Histogram,
}

impl Default for FlushMetrics {
    fn default() -> Self {
        FlushMetrics {
            seconds: Histogram::new(exponential_buckets(
                FLUSH_BUCKET_START_SECONDS,
                2.0,
                FLUSH_BUCKETS,
            )),
            records: Histogram::new(exponential_buckets(1.0, 2.0, GROUP_BUCKETS)),
        }
    }
}

impl FlushMetrics {
    /// One flush that took `elapsed` and made `records` records durable.
    pub fn observe(&self, elapsed: Duration, records: u64) {
        self.seconds.observe(elapsed.as_secs_f64());
        self.records.observe(records as f64);
    }
}

fn request_histogram() -> Histogram {
    Histogram::new(exponential_buckets(
        REQUEST_BUCKET_START_SECONDS,
        2.0,
        REQUEST_BUCKETS,
    ))
}

/// The master's metrics; one per `Master`.
pub struct Metrics {
    registry: Registry,
    requests: Family<OpLabels, Counter>,
    request_seconds: Family<OpLabels, Histogram, fn() -> Histogram>,
    errors: Family<KindLabels, Counter>,
    connections_open: Gauge,
    connections_refused: Family<ReasonLabels, Counter>,
    auth_failures: Counter,
    checkpoints: Counter,
    minions: Family<StateLabels, Gauge>,
    under_replicated: Gauge,
    missing: Gauge,
    copies_planned: Counter,
    copies_finished: Counter,
}

impl Metrics {
    /// Registers every metric, the journal's flush histograms among them.
    pub fn new(flushes: FlushMetrics) -> Metrics {
        let mut metrics = Metrics {
            registry: Registry::with_prefix("dfs_master"),
            requests: Family::default(),
            request_seconds: Family::new_with_constructor(request_histogram),
            errors: Family::default(),
            connections_open: Gauge::default(),
            connections_refused: Family::default(),
            auth_failures: Counter::default(),
            checkpoints: Counter::default(),
            minions: Family::default(),
            under_replicated: Gauge::default(),
            missing: Gauge::default(),
            copies_planned: Counter::default(),
            copies_finished: Counter::default(),
        };
        // Every state and reason shows from the start, at zero.
        for state in MINION_STATES {
            metrics.minions.get_or_create_owned(&StateLabels {
                state: state_label(state),
            });
        }
        for reason in [Refusal::Busy, Refusal::AuthLimited] {
            metrics
                .connections_refused
                .get_or_create_owned(&ReasonLabels {
                    reason: reason.label(),
                });
        }
        for kind in ERROR_KINDS {
            metrics.errors.get_or_create_owned(&KindLabels {
                kind: error_kind_label(kind),
            });
        }
        let registry = &mut metrics.registry;
        registry.register(
            "requests",
            "Requests answered, by kind (the MasterRequest variant)",
            metrics.requests.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Time from a request's arrival to its answer (durable for changes), by kind",
            metrics.request_seconds.clone(),
        );
        registry.register(
            "errors",
            "Requests answered with an error, by error kind",
            metrics.errors.clone(),
        );
        registry.register(
            "connections_open",
            "Client and minion connections being served",
            metrics.connections_open.clone(),
        );
        registry.register(
            "connections_refused",
            "Connections refused, by reason (busy: at a connection limit; auth_limited: the address failed to prove the cluster key too often)",
            metrics.connections_refused.clone(),
        );
        registry.register(
            "auth_failures",
            "Failed proofs of the cluster key or of a client identity",
            metrics.auth_failures.clone(),
        );
        registry.register(
            "journal_flush_duration_seconds",
            "Time of one journal flush (group commit)",
            flushes.seconds,
        );
        registry.register(
            "journal_flush_records",
            "Journal records made durable by one flush (group size)",
            flushes.records,
        );
        registry.register(
            "checkpoints",
            "Namespace checkpoints written",
            metrics.checkpoints.clone(),
        );
        registry.register(
            "minions",
            "Registered minions, by state",
            metrics.minions.clone(),
        );
        registry.register(
            "blocks_under_replicated",
            "Blocks with fewer replicas than their target, at the last replication round",
            metrics.under_replicated.clone(),
        );
        registry.register(
            "blocks_missing",
            "Blocks with no good replica on a minion that is not dead, at the last replication round",
            metrics.missing.clone(),
        );
        registry.register(
            "copies_planned",
            "Block copies (re-replications) handed to minions",
            metrics.copies_planned.clone(),
        );
        registry.register(
            "copies_finished",
            "Block copies whose every target reported the new replica",
            metrics.copies_finished.clone(),
        );
        metrics
    }

    /// One request of kind `op` answered `response` after `elapsed`.
    pub fn request_done(&self, op: &'static str, elapsed: Duration, response: &MasterResponse) {
        let labels = OpLabels { op };
        self.requests.get_or_create(&labels).inc();
        self.request_seconds
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
        if let MasterResponse::Error(error) = response {
            self.errors
                .get_or_create(&KindLabels {
                    kind: error_kind_label(error.kind),
                })
                .inc();
        }
    }

    pub fn connection_opened(&self) {
        self.connections_open.inc();
    }

    pub fn connection_closed(&self) {
        self.connections_open.dec();
    }

    pub fn connection_refused(&self, reason: Refusal) {
        self.connections_refused
            .get_or_create(&ReasonLabels {
                reason: reason.label(),
            })
            .inc();
    }

    pub fn auth_failed(&self) {
        self.auth_failures.inc();
    }

    pub fn checkpoint_written(&self) {
        self.checkpoints.inc();
    }

    /// What a replication round found and started.
    pub fn planned(&self, summary: &PlanSummary) {
        self.under_replicated
            .set(i64::try_from(summary.under_replicated).unwrap_or(i64::MAX));
        self.missing
            .set(i64::try_from(summary.missing).unwrap_or(i64::MAX));
        self.copies_planned
            .inc_by(summary.replications_started as u64);
    }

    pub fn copy_finished(&self) {
        self.copies_finished.inc();
    }

    /// Everything, in the text exposition format, with the minion gauges
    /// set from `minions` (the registry's reports) first.
    pub fn render_with(&self, minions: &[MinionReport]) -> String {
        for state in MINION_STATES {
            let count = minions.iter().filter(|m| m.state == state).count();
            self.minions
                .get_or_create(&StateLabels {
                    state: state_label(state),
                })
                .set(i64::try_from(count).unwrap_or(i64::MAX));
        }
        self.render()
    }

    /// Everything, in the text exposition format, as last set.
    pub fn render(&self) -> String {
        let mut text = String::new();
        // Writing to a String fails only if a metric's encoder does; none
        // of ours does.
        if let Err(error) = encode(&mut text, &self.registry) {
            tracing::error!("render metrics: {error}");
        }
        text
    }
}

const MINION_STATES: [MinionState; 6] = [
    MinionState::Live,
    MinionState::Stale,
    MinionState::Dead,
    MinionState::Decommissioning,
    MinionState::Decommissioned,
    MinionState::Joining,
];

fn state_label(state: MinionState) -> &'static str {
    match state {
        MinionState::Live => "live",
        MinionState::Stale => "stale",
        MinionState::Dead => "dead",
        MinionState::Decommissioning => "decommissioning",
        MinionState::Decommissioned => "decommissioned",
        MinionState::Joining => "joining",
    }
}

const ERROR_KINDS: [ErrorKind; 19] = [
    ErrorKind::NotFound,
    ErrorKind::AlreadyExists,
    ErrorKind::NotADirectory,
    ErrorKind::IsADirectory,
    ErrorKind::DirectoryNotEmpty,
    ErrorKind::InvalidArgument,
    ErrorKind::NoSpace,
    ErrorKind::UnknownMinion,
    ErrorKind::DuplicateMinion,
    ErrorKind::WrongCluster,
    ErrorKind::Corrupted,
    ErrorKind::PermissionDenied,
    ErrorKind::Busy,
    ErrorKind::Io,
    ErrorKind::Protocol,
    ErrorKind::Internal,
    ErrorKind::Starting,
    ErrorKind::NoAttribute,
    ErrorKind::NoSession,
];

fn error_kind_label(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::NotFound => "NotFound",
        ErrorKind::AlreadyExists => "AlreadyExists",
        ErrorKind::NotADirectory => "NotADirectory",
        ErrorKind::IsADirectory => "IsADirectory",
        ErrorKind::DirectoryNotEmpty => "DirectoryNotEmpty",
        ErrorKind::InvalidArgument => "InvalidArgument",
        ErrorKind::NoSpace => "NoSpace",
        ErrorKind::UnknownMinion => "UnknownMinion",
        ErrorKind::DuplicateMinion => "DuplicateMinion",
        ErrorKind::WrongCluster => "WrongCluster",
        ErrorKind::Corrupted => "Corrupted",
        ErrorKind::PermissionDenied => "PermissionDenied",
        ErrorKind::Busy => "Busy",
        ErrorKind::Io => "Io",
        ErrorKind::Protocol => "Protocol",
        ErrorKind::Internal => "Internal",
        ErrorKind::Starting => "Starting",
        ErrorKind::NoAttribute => "NoAttribute",
        ErrorKind::NoSession => "NoSession",
    }
}

/// The label of a request: its variant's name. The match has no wildcard,
/// so a new request kind must be named here.
pub fn op_name(request: &MasterRequest) -> &'static str {
    match request {
        MasterRequest::Register { .. } => "Register",
        MasterRequest::Heartbeat { .. } => "Heartbeat",
        MasterRequest::BlockReport { .. } => "BlockReport",
        MasterRequest::Stat { .. } => "Stat",
        MasterRequest::List { .. } => "List",
        MasterRequest::Mkdir { .. } => "Mkdir",
        MasterRequest::Delete { .. } => "Delete",
        MasterRequest::Rename { .. } => "Rename",
        MasterRequest::OpenWrite { .. } => "OpenWrite",
        MasterRequest::AllocateBlock { .. } => "AllocateBlock",
        MasterRequest::CommitBlock { .. } => "CommitBlock",
        MasterRequest::AbandonBlock { .. } => "AbandonBlock",
        MasterRequest::CloseWrite { .. } => "CloseWrite",
        MasterRequest::AbortWrite { .. } => "AbortWrite",
        MasterRequest::GetBlocks { .. } => "GetBlocks",
        MasterRequest::ClusterReport => "ClusterReport",
        MasterRequest::BlockChanges { .. } => "BlockChanges",
        MasterRequest::SetAttributes { .. } => "SetAttributes",
        MasterRequest::Fsck { .. } => "Fsck",
        MasterRequest::Decommission { .. } => "Decommission",
        MasterRequest::Recommission { .. } => "Recommission",
        MasterRequest::ReportBadReplicas { .. } => "ReportBadReplicas",
        MasterRequest::DataDirectoryFailed { .. } => "DataDirectoryFailed",
        MasterRequest::Batch { .. } => "Batch",
        MasterRequest::Symlink { .. } => "Symlink",
        MasterRequest::Link { .. } => "Link",
        MasterRequest::ReadLink { .. } => "ReadLink",
        MasterRequest::OpenSession => "OpenSession",
        MasterRequest::RenewSession { .. } => "RenewSession",
        MasterRequest::CloseSession { .. } => "CloseSession",
        MasterRequest::Lock { .. } => "Lock",
        MasterRequest::TestLock { .. } => "TestLock",
        MasterRequest::ReleaseLocks { .. } => "ReleaseLocks",
        MasterRequest::Mknod { .. } => "Mknod",
        MasterRequest::PatchWrite { .. } => "PatchWrite",
        MasterRequest::SetXattr { .. } => "SetXattr",
        MasterRequest::RemoveXattr { .. } => "RemoveXattr",
        MasterRequest::GetXattr { .. } => "GetXattr",
        MasterRequest::ListXattrs { .. } => "ListXattrs",
        MasterRequest::Hold { .. } => "Hold",
        MasterRequest::Release { .. } => "Release",
        MasterRequest::ReclaimLock { .. } => "ReclaimLock",
        MasterRequest::Authenticate { .. } => "Authenticate",
        MasterRequest::ProveMember { .. } => "ProveMember",
        MasterRequest::AuthenticateClient { .. } => "AuthenticateClient",
        MasterRequest::ProveClient { .. } => "ProveClient",
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use dfs_engine::limits::{BLOCK_BYTES_DEFAULT, REPLICATION_DEFAULT};
    use dfs_engine::msg::{Credentials, MasterRequest, MasterResponse, MinionId};

    use crate::service::{Master, MasterConfig, ADMIN_GROUP_DEFAULT};

    use super::*;

    /// A strict reader of the text exposition format, as `render` writes it:
    /// `# HELP`, `# TYPE` and `# UNIT` lines, samples with labels, and `# EOF`
    /// last. Anything else fails the test, naming the line.
    mod exposition {
        use std::collections::BTreeMap;

        pub struct Sample {
            pub name: String,
            pub labels: BTreeMap<String, String>,
            pub value: f64,
        }

        pub struct Exposition {
            /// Family name -> its type.
            pub families: BTreeMap<String, String>,
            pub samples: Vec<Sample>,
        }

        impl Exposition {
            /// The value of the sample `name` with exactly `labels`.
            pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
                let wanted: BTreeMap<String, String> = labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect();
                self.samples
                    .iter()
                    .find(|s| s.name == name && s.labels == wanted)
                    .map(|s| s.value)
            }

            /// The sum of every sample `name`, whatever its labels.
            pub fn sum(&self, name: &str) -> f64 {
                self.samples
                    .iter()
                    .filter(|s| s.name == name)
                    .map(|s| s.value)
                    .sum()
            }

            /// True when `name` is a series this exposition can have: a
            /// declared family, or one with its type's suffix.
            pub fn knows(&self, name: &str) -> bool {
                self.families.iter().any(|(family, kind)| {
                    suffixes(kind)
                        .iter()
                        .any(|s| name == format!("{family}{s}"))
                })
            }
        }

        fn suffixes(kind: &str) -> &'static [&'static str] {
            match kind {
                "counter" => &["_total", "_created"],
                "histogram" => &["_bucket", "_sum", "_count", "_created"],
                _ => &[""],
            }
        }

        fn is_name(text: &str) -> bool {
            let mut chars = text.chars();
            chars
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
                && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
        }

        fn value(text: &str) -> Result<f64, String> {
            match text {
                "+Inf" => Ok(f64::INFINITY),
                "-Inf" => Ok(f64::NEG_INFINITY),
                "NaN" => Ok(f64::NAN),
                _ => text.parse().map_err(|_| format!("bad value {text:?}")),
            }
        }

        /// `{a="x",b="y"}` at the start of `text`: the labels and the rest.
        fn labels(text: &str) -> Result<(BTreeMap<String, String>, &str), String> {
            let mut labels = BTreeMap::new();
            let mut rest = text.strip_prefix('{').ok_or("no {")?;
            loop {
                if let Some(after) = rest.strip_prefix('}') {
                    return Ok((labels, after));
                }
                let (name, after) = rest.split_once("=\"").ok_or("a label without =\"")?;
                if !is_name(name) {
                    return Err(format!("bad label name {name:?}"));
                }
                let mut label_value = String::new();
                let mut chars = after.char_indices();
                let end = loop {
                    match chars.next() {
                        Some((i, '"')) => break i,
                        Some((_, '\\')) => match chars.next() {
                            Some((_, '\\')) => label_value.push('\\'),
                            Some((_, '"')) => label_value.push('"'),
                            Some((_, 'n')) => label_value.push('\n'),
                            other => return Err(format!("bad escape {other:?}")),
                        },
                        Some((_, c)) => label_value.push(c),
                        None => return Err("an unterminated label value".into()),
                    }
                };
                if labels.insert(name.to_string(), label_value).is_some() {
                    return Err(format!("label {name} twice"));
                }
                rest = &after[end + 1..];
                if let Some(after_comma) = rest.strip_prefix(',') {
                    rest = after_comma;
                } else if !rest.starts_with('}') {
                    return Err("labels not separated by ,".into());
                }
            }
        }

        fn line(exposition: &mut Exposition, line: &str) -> Result<(), String> {
            if let Some(comment) = line.strip_prefix("# ") {
                let mut words = comment.splitn(3, ' ');
                let keyword = words.next().unwrap_or_default();
                let family = words.next().ok_or("a comment without a name")?;
                let text = words.next().ok_or("a comment without text")?;
                if !is_name(family) {
                    return Err(format!("bad family name {family:?}"));
                }
                return match keyword {
                    "HELP" | "UNIT" => Ok(()),
                    "TYPE" => {
                        let known = [
                            "counter",
                            "gauge",
                            "histogram",
                            "summary",
                            "info",
                            "stateset",
                            "gaugehistogram",
                            "unknown",
                        ];
                        if !known.contains(&text) {
                            return Err(format!("unknown type {text:?}"));
                        }
                        if exposition
                            .families
                            .insert(family.to_string(), text.to_string())
                            .is_some()
                        {
                            return Err(format!("{family} declared twice"));
                        }
                        Ok(())
                    }
                    _ => Err(format!("unknown comment {keyword:?}")),
                };
            }
            let name_end = line.find(['{', ' ']).ok_or("a sample without a value")?;
            let name = &line[..name_end];
            if !is_name(name) {
                return Err(format!("bad sample name {name:?}"));
            }
            let (labels, rest) = if line[name_end..].starts_with('{') {
                labels(&line[name_end..])?
            } else {
                (Default::default(), &line[name_end..])
            };
            let rest = rest.strip_prefix(' ').ok_or("no space before the value")?;
            let mut fields = rest.split(' ');
            let sample_value = value(fields.next().unwrap_or_default())?;
            if let Some(timestamp) = fields.next() {
                value(timestamp)?;
            }
            if fields.next().is_some() {
                return Err("more after the timestamp".into());
            }
            if !exposition.knows(name) {
                return Err(format!("{name} belongs to no declared family"));
            }
            exposition.samples.push(Sample {
                name: name.to_string(),
                labels,
                value: sample_value,
            });
            Ok(())
        }

        /// Parses `text`; panics at the first malformed line.
        pub fn parse(text: &str) -> Exposition {
            let mut exposition = Exposition {
                families: BTreeMap::new(),
                samples: Vec::new(),
            };
            let mut lines = text.lines().enumerate().peekable();
            while let Some((number, text_line)) = lines.next() {
                if text_line == "# EOF" {
                    assert!(
                        lines.peek().is_none(),
                        "line {}: text after # EOF",
                        number + 1
                    );
                    return exposition;
                }
                if let Err(why) = line(&mut exposition, text_line) {
                    panic!("line {}: {why}: {text_line:?}", number + 1);
                }
            }
            panic!("no # EOF at the end:\n{text}");
        }
    }

    /// Every family the master renders.
    const FAMILIES: [&str; 14] = [
        "dfs_master_requests",
        "dfs_master_request_duration_seconds",
        "dfs_master_errors",
        "dfs_master_connections_open",
        "dfs_master_connections_refused",
        "dfs_master_auth_failures",
        "dfs_master_journal_flush_duration_seconds",
        "dfs_master_journal_flush_records",
        "dfs_master_checkpoints",
        "dfs_master_minions",
        "dfs_master_blocks_under_replicated",
        "dfs_master_blocks_missing",
        "dfs_master_copies_planned",
        "dfs_master_copies_finished",
    ];

    /// A master on a fresh data directory with two registered minions that
    /// exist only on paper.
    fn master() -> (tempfile::TempDir, Master) {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = MasterConfig {
            default_replication: REPLICATION_DEFAULT,
            default_block_bytes: BLOCK_BYTES_DEFAULT,
            heartbeat_interval: Duration::from_secs(1),
            stale_after: Duration::from_secs(600),
            dead_after: Duration::from_secs(1200),
            journal_segment_bytes: dfs_engine::limits::JOURNAL_SEGMENT_BYTES_MIN,
            checkpoint_journal_bytes: u64::MAX,
            orphaned_write_timeout: Duration::from_secs(60),
            recover: false,
            orphan_grace: Duration::from_secs(3600),
            replication_timeout: Duration::from_secs(120),
            safe_mode_timeout: Duration::ZERO,
            lock_lease: Duration::from_secs(30),
            admin_group: ADMIN_GROUP_DEFAULT.to_string(),
            cluster_key: None,
            anonymous_clients: false,
        };
        let master = Master::open(&dir.path().join("master"), config).expect("open master");
        for id in 1..=2 {
            let registered = master.handle(
                0,
                &Credentials::default(),
                MasterRequest::Register {
                    minion: MinionId(id),
                    cluster: None,
                    address: format!("127.0.0.1:{}", 20_000 + id),
                    capacity_bytes: 1 << 40,
                    used_bytes: 0,
                    available_bytes: 1 << 40,
                },
            );
            assert!(
                matches!(registered, MasterResponse::Registered { .. }),
                "{registered:?}"
            );
            let reported = master.handle(
                0,
                &Credentials::default(),
                MasterRequest::BlockReport {
                    minion: MinionId(id),
                    blocks: vec![],
                    first: true,
                    last: true,
                },
            );
            assert!(matches!(reported, MasterResponse::Ok), "{reported:?}");
        }
        (dir, master)
    }

    fn mkdir(master: &Master, path: &str) -> MasterResponse {
        master.handle(
            1,
            &Credentials::default(),
            MasterRequest::Mkdir {
                path: path.into(),
                parents: false,
                mode: 0o755,
            },
        )
    }

    #[test]
    fn metrics_render_every_family_and_count_requests_by_kind() {
        let (_dir, master) = master();
        let before = exposition::parse(&master.render_metrics());
        for family in FAMILIES {
            assert!(before.families.contains_key(family), "{family} missing");
        }
        assert_eq!(
            before.value("dfs_master_requests_total", &[("op", "Register")]),
            Some(2.0)
        );
        assert_eq!(
            before.value("dfs_master_requests_total", &[("op", "Mkdir")]),
            None
        );
        assert_eq!(
            before.value("dfs_master_minions", &[("state", "live")]),
            Some(2.0)
        );
        assert_eq!(
            before.value("dfs_master_minions", &[("state", "dead")]),
            Some(0.0)
        );

        assert!(matches!(mkdir(&master, "/a"), MasterResponse::Ok));
        assert!(matches!(mkdir(&master, "/b"), MasterResponse::Ok));
        assert!(matches!(mkdir(&master, "/a"), MasterResponse::Error(_)));
        let stat = master.handle(
            1,
            &Credentials::default(),
            MasterRequest::Stat { path: "/a".into() },
        );
        assert!(matches!(stat, MasterResponse::Status(_)), "{stat:?}");
        master.metrics().connection_opened();
        master.metrics().connection_refused(Refusal::AuthLimited);
        master.metrics().auth_failed();
        let summary = master.heal_round(std::time::Instant::now());

        let after = exposition::parse(&master.render_metrics());
        let mkdirs = [("op", "Mkdir")];
        assert_eq!(after.value("dfs_master_requests_total", &mkdirs), Some(3.0));
        assert_eq!(
            after.value("dfs_master_request_duration_seconds_count", &mkdirs),
            Some(3.0)
        );
        assert_eq!(
            after.value("dfs_master_requests_total", &[("op", "Stat")]),
            Some(1.0)
        );
        assert_eq!(
            after.value("dfs_master_errors_total", &[("kind", "AlreadyExists")]),
            Some(1.0)
        );
        // Two changes made durable, by one flush or more.
        let flushed = after.value("dfs_master_journal_flush_records_sum", &[]);
        assert!(flushed.is_some_and(|records| records >= 2.0), "{flushed:?}");
        assert!(after.sum("dfs_master_journal_flush_duration_seconds_count") >= 1.0);
        assert_eq!(after.value("dfs_master_connections_open", &[]), Some(1.0));
        assert_eq!(
            after.value(
                "dfs_master_connections_refused_total",
                &[("reason", "auth_limited")]
            ),
            Some(1.0)
        );
        assert_eq!(
            after.value("dfs_master_auth_failures_total", &[]),
            Some(1.0)
        );
        assert_eq!(
            after.value("dfs_master_blocks_under_replicated", &[]),
            Some(summary.under_replicated as f64)
        );
        assert_eq!(
            after.value("dfs_master_copies_planned_total", &[]),
            Some(0.0)
        );
    }

    #[test]
    fn metrics_the_dashboard_queries_exist() {
        let (_dir, master) = master();
        let rendered = exposition::parse(&master.render_metrics());
        let dashboard: serde_json::Value =
            serde_json::from_str(include_str!("../../deploy/grafana/dfs.json"))
                .expect("deploy/grafana/dfs.json is JSON");
        let mut expressions = Vec::new();
        collect_expressions(&dashboard, &mut expressions);
        assert!(expressions.len() > 10, "{expressions:?}");
        let mut checked = 0;
        for expression in &expressions {
            for name in metric_names(expression) {
                assert!(
                    name.starts_with("dfs_master_") || name.starts_with("dfs_minion_"),
                    "{name} in {expression:?} is neither the master's nor a minion's"
                );
                if name.starts_with("dfs_master_") {
                    assert!(rendered.knows(&name), "{name} in {expression:?}");
                    checked += 1;
                }
            }
        }
        assert!(checked > 10, "{checked} master series checked");
    }

    /// Every `expr` string in a dashboard.
    fn collect_expressions(value: &serde_json::Value, found: &mut Vec<String>) {
        match value {
            serde_json::Value::Object(map) => {
                for (key, value) in map {
                    match (key.as_str(), value) {
                        ("expr", serde_json::Value::String(expr)) => found.push(expr.clone()),
                        _ => collect_expressions(value, found),
                    }
                }
            }
            serde_json::Value::Array(items) => {
                for item in items {
                    collect_expressions(item, found);
                }
            }
            _ => {}
        }
    }

    /// The `dfs_...` names a query uses.
    fn metric_names(expression: &str) -> Vec<String> {
        expression
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .filter(|word| word.starts_with("dfs_"))
            .map(str::to_string)
            .collect()
    }
}
