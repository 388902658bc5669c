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
                state: state.name(),
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
                    state: state.name(),
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
        MasterRequest::DataTrust => "DataTrust",
        MasterRequest::MarkAccessed { .. } => "MarkAccessed",
        MasterRequest::OpenInodeWrite { .. } => "OpenInodeWrite",
    }
}

#[cfg(test)]
mod tests {

    use dfs_engine::msg::{Credentials, MasterRequest, MasterResponse};
    use dfs_testkit::metrics as exposition;

    use crate::service::Master;

    use super::*;

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
        crate::service::fixture::master(2)
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
