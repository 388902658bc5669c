//! The HTML pages: plain HTML and one inline style sheet, no script and no
//! external asset, laid out to read on a phone. Every text from the
//! cluster (names, owners, addresses, messages) passes through `escape`.

use std::fmt::Write;

use axum::extract::{Query, State};
use axum::http::{header, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use dfs_engine::msg::{ErrorKind, RemoteError};
use dfs_engine::path::DfsPath;
use dfs_engine::sync;
use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde::Deserialize;

use super::chart::{line_chart, ChartPoint};
use super::{api, run_blocking, AppState};
use crate::status::{
    self, BrowseView, ClusterStatus, EntryView, HistorySeries, MinionList, PieceList,
};

/// What a path component keeps unencoded in a link: RFC 3986's unreserved
/// characters.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// How often the overview reloads itself (a meta refresh, no script).
const REFRESH_SECONDS: u32 = 10;

const STYLE: &str = r#"
:root{color-scheme:light dark;--fg:#1b1f24;--muted:#5b6570;--bg:#fff;--card:#f4f6f8;--line:#d8dde2;--accent:#2b6cb0;--ok:#2f855a;--warn:#a86b00;--bad:#c53030}
@media (prefers-color-scheme:dark){:root{--fg:#e6e9ec;--muted:#9aa5b1;--bg:#15181b;--card:#1e2227;--line:#343b42;--accent:#63a4e8;--ok:#48bb78;--warn:#ecc94b;--bad:#fc8181}}
*{box-sizing:border-box}
body{margin:0;font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Liberation Sans",sans-serif;color:var(--fg);background:var(--bg)}
header{padding:.7rem 1rem;border-bottom:1px solid var(--line);display:flex;flex-wrap:wrap;gap:.3rem 1.2rem;align-items:baseline}
header h1{font-size:1.1rem;margin:0}
nav a{margin-right:1rem}
a{color:var(--accent)}
main{padding:1rem;max-width:76rem;margin:0 auto}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(16rem,1fr));gap:1rem;margin-bottom:1rem}
.card{background:var(--card);border:1px solid var(--line);border-radius:.5rem;padding:.8rem 1rem;min-width:0}
h2{font-size:1rem;margin:0 0 .5rem}
.bar{height:.75rem;background:var(--line);border-radius:.4rem;overflow:hidden;min-width:4rem}
.bar span{display:block;height:100%;background:var(--accent)}
.bar.high span{background:var(--warn)}
.bar.full span{background:var(--bad)}
dl{display:grid;grid-template-columns:auto 1fr;gap:.15rem .8rem;margin:.5rem 0 0}
dt{color:var(--muted)}
dd{margin:0;font-variant-numeric:tabular-nums;overflow-wrap:anywhere}
.table{overflow-x:auto}
table{border-collapse:collapse;width:100%;font-variant-numeric:tabular-nums}
th,td{text-align:left;padding:.3rem .5rem;border-bottom:1px solid var(--line);white-space:nowrap;vertical-align:top}
th{color:var(--muted);font-weight:600}
td.num,th.num{text-align:right}
td.wrap{white-space:normal;overflow-wrap:anywhere}
.state{font-weight:600}
.state-live{color:var(--ok)}
.state-stale,.state-joining,.state-decommissioning,.state-draining{color:var(--warn)}
.state-dead,.state-corrupt{color:var(--bad)}
.state-decommissioned{color:var(--muted)}
.bad{color:var(--bad);font-weight:600}
.ok{color:var(--ok)}
.banner{border:1px solid var(--warn);border-radius:.5rem;padding:.6rem 1rem;margin-bottom:1rem}
.chart{width:100%;height:auto;display:block}
.chart .axis{stroke:var(--muted);fill:none;stroke-width:1}
.chart .grid{stroke:var(--line);stroke-dasharray:3 3;fill:none}
.chart .line{fill:none;stroke:var(--accent);stroke-width:1.5}
.chart text{font-size:9px;fill:var(--muted)}
.note{color:var(--muted);font-size:.9rem}
code{font-family:ui-monospace,"DejaVu Sans Mono",monospace;font-size:.92em}
.crumbs{overflow-wrap:anywhere;margin:0 0 1rem;font-size:1.05rem}
.replica{display:inline-block;margin-right:.8rem}
"#;

/// `text` with `&`, `<`, `>`, `"` and `'` replaced by entities: safe in
/// element content and in quoted attribute values.
pub fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            c => escaped.push(c),
        }
    }
    escaped
}

/// A page as a response, with headers that forbid scripts and framing.
fn html(status: StatusCode, body: String) -> Response {
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CONTENT_TYPE, "text/html; charset=utf-8"),
        (header::CACHE_CONTROL, "no-store"),
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
        ),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

/// The frame every page shares; `refresh` reloads it every few seconds.
fn page(title: &str, refresh: bool, body: &str) -> String {
    let refresh = if refresh {
        format!(r#"<meta http-equiv="refresh" content="{REFRESH_SECONDS}">"#)
    } else {
        String::new()
    };
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">{refresh}<title>{title}</title><style>{STYLE}</style></head>
<body><header><h1>dfs master</h1><nav><a href="/">Status</a><a href="/browse/">Files</a><a href="/api/v1/cluster">JSON</a></nav></header>
<main>{body}</main></body></html>
"#,
        title = escape(title),
    )
}

/// A page saying what went wrong.
pub fn error_page(status: StatusCode, message: &str) -> Response {
    let reason = status.canonical_reason().unwrap_or("Error");
    let body = format!(
        r#"<h2>{code} {reason}</h2><p class="message">{message}</p><p><a href="/">Status</a> · <a href="/browse/">Files</a></p>"#,
        code = status.as_u16(),
        message = escape(message),
    );
    html(
        status,
        page(&format!("{} {reason}", status.as_u16()), false, &body),
    )
}

/// Any path no route has.
pub async fn not_found(uri: Uri) -> Response {
    let message = format!("no page at {}", uri.path());
    if uri.path().starts_with("/api/") {
        api::error(StatusCode::NOT_FOUND, &message)
    } else {
        error_page(StatusCode::NOT_FOUND, &message)
    }
}

/// The status code for a refused lookup.
pub fn status_of(error: &RemoteError) -> StatusCode {
    match error.kind {
        ErrorKind::NotFound | ErrorKind::NotADirectory => StatusCode::NOT_FOUND,
        ErrorKind::InvalidArgument => StatusCode::BAD_REQUEST,
        ErrorKind::Busy | ErrorKind::Starting => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

// --- formatting ---

/// Bytes in binary units, one decimal ("1.5 GiB"); plain under 1 KiB.
pub fn format_bytes(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// A byte count with the exact number on hover.
fn bytes_cell(bytes: u64) -> String {
    format!(
        r#"<span title="{bytes} bytes">{}</span>"#,
        format_bytes(bytes)
    )
}

/// An age in milliseconds, short ("850 ms", "12 s", "4 min", "3 h", "2 d").
pub fn format_age_ms(ms: u64) -> String {
    match ms {
        0..1_000 => format!("{ms} ms"),
        1_000..120_000 => format!("{} s", ms / 1_000),
        120_000..7_200_000 => format!("{} min", ms / 60_000),
        7_200_000..172_800_000 => format!("{} h", ms / 3_600_000),
        _ => format!("{} d", ms / 86_400_000),
    }
}

/// Milliseconds since the Unix epoch as a UTC date and time.
pub fn format_utc_ms(ms: u64) -> String {
    let t = dfs_engine::units::civil_time(ms);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
        t.year, t.month, t.day, t.hour, t.minute, t.second
    )
}

/// Permission bits as `ls -l` shows them, after the kind's letter.
pub fn mode_text(kind: &str, mode: u32) -> String {
    let kind = match kind {
        "directory" => 'd',
        "symlink" => 'l',
        "fifo" => 'p',
        "socket" => 's',
        "char-device" => 'c',
        "block-device" => 'b',
        _ => '-',
    };
    let mut text = String::with_capacity(10);
    text.push(kind);
    for (shift, special, set_letter) in [(6, 0o4000, 's'), (3, 0o2000, 's'), (0, 0o1000, 't')] {
        let bits = (mode >> shift) & 0o7;
        text.push(if bits & 0o4 != 0 { 'r' } else { '-' });
        text.push(if bits & 0o2 != 0 { 'w' } else { '-' });
        let execute = bits & 0o1 != 0;
        text.push(match (mode & special != 0, execute) {
            (true, true) => set_letter,
            (true, false) => set_letter.to_ascii_uppercase(),
            (false, true) => 'x',
            (false, false) => '-',
        });
    }
    text
}

/// The browser's link to `path`.
pub fn browse_href(path: &str) -> String {
    let mut href = String::from("/browse");
    for component in path.split('/').filter(|part| !part.is_empty()) {
        href.push('/');
        href.extend(utf8_percent_encode(component, COMPONENT));
    }
    if href == "/browse" {
        href.push('/');
    }
    href
}

fn child_path(parent: &str, name: &str) -> String {
    if parent == "/" {
        format!("/{name}")
    } else {
        format!("{parent}/{name}")
    }
}

/// A bar `used` of `total` full, coloured past 80% and 95%.
fn bar(used: u64, total: u64) -> String {
    let percent = if total == 0 {
        0.0
    } else {
        (used as f64 / total as f64 * 100.0).clamp(0.0, 100.0)
    };
    let class = if percent >= 95.0 {
        "bar full"
    } else if percent >= 80.0 {
        "bar high"
    } else {
        "bar"
    };
    format!(
        r#"<div class="{class}" title="{percent:.1}%"><span style="width:{percent:.1}%"></span></div>"#
    )
}

fn rate_text(rate: Option<f64>) -> String {
    match rate {
        Some(rate) => format!("{rate:.1}/s"),
        None => "measuring…".to_string(),
    }
}

/// A count shown in the "bad" colour when it is not zero.
fn problem_count(count: u64) -> String {
    if count == 0 {
        r#"<span class="ok">0</span>"#.to_string()
    } else {
        format!(r#"<span class="bad">{count}</span>"#)
    }
}

// --- the overview ---

/// The status page: `GET /`.
pub async fn overview(State(state): State<AppState>) -> Response {
    let built = run_blocking(&state, |state| {
        let cluster = status::cluster(&state.master, &state.history);
        let minions = status::minions(&state.master);
        let series = sync::lock(&state.history).series();
        overview_page(&cluster, &minions, &series)
    })
    .await;
    match built {
        Ok(body) => html(StatusCode::OK, body),
        Err(why) => error_page(StatusCode::SERVICE_UNAVAILABLE, &why.message()),
    }
}

/// The status page's HTML.
pub fn overview_page(
    cluster: &ClusterStatus,
    minions: &MinionList,
    series: &HistorySeries,
) -> String {
    let mut body = String::new();
    if let Some(reason) = &cluster.starting_reason {
        let _ = write!(
            body,
            r#"<p class="banner">Starting (safe mode): {}. Block lookups and healing wait until the minions' block reports are in.</p>"#,
            escape(reason)
        );
    }
    body.push_str(r#"<div class="cards">"#);
    body.push_str(&capacity_card(cluster));
    body.push_str(&health_card(cluster));
    body.push_str(&healing_card(cluster));
    body.push_str(&namespace_card(cluster));
    body.push_str(&journal_card(cluster));
    body.push_str("</div>");
    body.push_str(&charts(series));
    body.push_str(&minion_table(minions));
    let _ = write!(
        body,
        r#"<p class="note">Cluster <code>{id}</code> at {time}; this page reloads every {REFRESH_SECONDS} s. The same data as JSON: <a href="/api/v1/cluster">cluster</a>, <a href="/api/v1/minions">minions</a>, <a href="/api/v1/history">history</a>.</p>"#,
        id = escape(&cluster.cluster_id),
        time = format_utc_ms(cluster.time_ms),
    );
    page("dfs master: status", true, &body)
}

fn capacity_card(cluster: &ClusterStatus) -> String {
    let capacity = &cluster.capacity;
    let minions = &cluster.minions;
    let mut states = vec![format!("{} live", minions.live)];
    for (count, name) in [
        (minions.joining, "joining"),
        (minions.stale, "stale"),
        (minions.dead, "dead"),
        (minions.decommissioning, "decommissioning"),
        (minions.decommissioned, "decommissioned"),
    ] {
        if count > 0 {
            states.push(format!(
                r#"<span class="state state-{name}">{count} {name}</span>"#
            ));
        }
    }
    format!(
        r#"<section class="card" id="capacity"><h2>Capacity</h2>{bar}<dl><dt>Used</dt><dd>{used} of {total}</dd><dt>Available</dt><dd>{available}</dd><dt>Minions</dt><dd>{states}</dd></dl></section>"#,
        bar = bar(capacity.used_bytes, capacity.capacity_bytes),
        used = bytes_cell(capacity.used_bytes),
        total = bytes_cell(capacity.capacity_bytes),
        available = bytes_cell(capacity.available_bytes),
        states = states.join(", "),
    )
}

fn health_card(cluster: &ClusterStatus) -> String {
    let health = &cluster.health;
    let verdict = if health.under_replicated_blocks == 0 && health.corrupt_blocks == 0 {
        r#"<span class="ok">every block fully replicated</span>"#
    } else if health.missing_blocks > 0 {
        r#"<span class="bad">blocks are missing</span>"#
    } else {
        r#"<span class="bad">blocks need copies</span>"#
    };
    format!(
        r#"<section class="card" id="health"><h2>Block health</h2><p>{verdict}</p><dl><dt>Under-replicated</dt><dd id="under-replicated">{under}</dd><dt>Missing</dt><dd id="missing">{missing}</dd><dt>Corrupt</dt><dd id="corrupt">{corrupt}</dd></dl></section>"#,
        under = problem_count(health.under_replicated_blocks),
        missing = problem_count(health.missing_blocks),
        corrupt = problem_count(health.corrupt_blocks),
    )
}

fn healing_card(cluster: &ClusterStatus) -> String {
    let healing = &cluster.healing;
    format!(
        r#"<section class="card" id="healing"><h2>Healing</h2><dl><dt>Queued</dt><dd>{queued}</dd><dt>In flight</dt><dd>{in_flight}</dd><dt>Done</dt><dd>{done}</dd><dt>Rate</dt><dd>{rate} (last minute)</dd></dl></section>"#,
        queued = healing.copies_queued,
        in_flight = healing.copies_in_flight,
        done = healing.copies_done,
        rate = rate_text(healing.copies_per_second),
    )
}

fn namespace_card(cluster: &ClusterStatus) -> String {
    let namespace = &cluster.namespace;
    format!(
        r#"<section class="card" id="namespace"><h2>Namespace</h2><dl><dt>Files</dt><dd>{files}</dd><dt>Directories</dt><dd>{directories}</dd><dt>Blocks</dt><dd>{blocks}</dd><dt>Defaults</dt><dd>replication {replication}, blocks of {block}</dd></dl><p><a href="/browse/">Browse the files</a></p></section>"#,
        files = namespace.files,
        directories = namespace.directories,
        blocks = namespace.blocks,
        replication = cluster.defaults.replication,
        block = format_bytes(cluster.defaults.block_bytes),
    )
}

fn journal_card(cluster: &ClusterStatus) -> String {
    let journal = &cluster.journal;
    let checkpoint = match (journal.checkpoint_sequence, journal.checkpoint_time_ms) {
        (None, _) => "a checkpoint is being written".to_string(),
        (Some(sequence), Some(time_ms)) => format!(
            "sequence {sequence}, {} ({} ago)",
            format_utc_ms(time_ms),
            format_age_ms(cluster.time_ms.saturating_sub(time_ms))
        ),
        (Some(sequence), None) => format!("sequence {sequence}"),
    };
    let since = journal
        .since_checkpoint_bytes
        .map_or_else(|| "…".to_string(), bytes_cell);
    format!(
        r#"<section class="card" id="journal"><h2>Journal</h2><dl><dt>Last sequence</dt><dd>{last} ({durable} durable)</dd><dt>Since checkpoint</dt><dd>{since}</dd><dt>Checkpoint</dt><dd>{checkpoint}</dd><dt>Changes</dt><dd>{rate} (last minute)</dd></dl></section>"#,
        last = journal.last_sequence,
        durable = journal.durable_sequence,
        rate = rate_text(journal.namespace_ops_per_second),
    )
}

fn charts(series: &HistorySeries) -> String {
    let points = |value: fn(&status::HistoryPoint) -> f64| -> Vec<ChartPoint> {
        series
            .points
            .iter()
            .map(|point| ChartPoint {
                time_ms: point.time_ms,
                value: value(point),
            })
            .collect()
    };
    let ops = line_chart(
        "Namespace changes per second",
        "changes/s",
        &points(|point| point.namespace_ops_per_second),
        series.window_ms,
        series.time_ms,
    );
    let copies = line_chart(
        "Block copies per second",
        "copies/s",
        &points(|point| point.copies_per_second),
        series.window_ms,
        series.time_ms,
    );
    let throughput = line_chart(
        "Data read and written, MiB per second",
        "MiB/s",
        &points(|point| {
            (point.read_bytes_per_second + point.written_bytes_per_second) / (1024.0 * 1024.0)
        }),
        series.window_ms,
        series.time_ms,
    );
    format!(
        r#"<div class="cards"><section class="card" id="throughput-chart"><h2>Data read and written, MiB/s</h2>{throughput}</section><section class="card" id="ops-chart"><h2>Namespace changes per second</h2>{ops}</section><section class="card" id="copies-chart"><h2>Block copies per second</h2>{copies}</section></div>"#
    )
}

fn minion_table(minions: &MinionList) -> String {
    let mut table = String::from(
        r#"<section class="card" id="minions"><h2>Minions</h2><div class="table"><table><thead><tr><th>Address</th><th>State</th><th class="num">Capacity</th><th>Used</th><th class="num">Blocks</th><th class="num">Read/s</th><th class="num">Written/s</th><th class="num">Copied/s</th><th class="num">Heartbeat</th><th>Failed directories</th><th>Id</th></tr></thead><tbody>"#,
    );
    if minions.minions.is_empty() {
        table.push_str(r#"<tr><td colspan="11">no minion has registered</td></tr>"#);
    }
    for minion in &minions.minions {
        let failed = if minion.failed_directories.is_empty() {
            "none".to_string()
        } else {
            minion
                .failed_directories
                .iter()
                .map(|directory| escape(directory))
                .collect::<Vec<_>>()
                .join("<br>")
        };
        let _ = write!(
            table,
            r#"<tr id="minion-{id}" class="minion"><td>{address}</td><td class="state state-{state}">{state}</td><td class="num">{capacity}</td><td>{bar}<span class="note">{used}</span></td><td class="num">{blocks}</td><td class="num read-rate">{read}</td><td class="num write-rate">{written}</td><td class="num copy-rate">{copied}</td><td class="num">{age} ago</td><td class="wrap">{failed}</td><td><code>{id}</code></td></tr>"#,
            id = escape(&minion.id),
            address = escape(&minion.address),
            state = minion.state,
            capacity = bytes_cell(minion.capacity_bytes),
            bar = bar(minion.used_bytes, minion.capacity_bytes),
            used = bytes_cell(minion.used_bytes),
            blocks = minion.blocks,
            read = bytes_cell(minion.read_bytes_per_s),
            written = bytes_cell(minion.written_bytes_per_s),
            copied = bytes_cell(minion.copied_bytes_per_s),
            age = format_age_ms(minion.last_heartbeat_age_ms),
        );
    }
    table.push_str("</tbody></table></div></section>");
    table
}

// --- the file browser ---

/// `?after=NAME`: the page of entries after NAME.
#[derive(Debug, Default, Deserialize)]
pub struct BrowseQuery {
    pub after: Option<String>,
}

/// The path a `/browse/...` URI names, percent-decoded and checked.
pub fn browse_path(uri: &Uri) -> Result<DfsPath, RemoteError> {
    let rest = uri.path().strip_prefix("/browse").unwrap_or("/");
    let bytes: Vec<u8> = percent_decode_str(rest).collect();
    let bytes = if bytes.is_empty() {
        b"/".to_vec()
    } else {
        bytes
    };
    DfsPath::parse_bytes(&bytes)
        .map_err(|e| RemoteError::new(ErrorKind::InvalidArgument, e.to_string()))
}

/// The file browser: `GET /browse/PATH[?after=NAME]`.
pub async fn browse(
    State(state): State<AppState>,
    uri: Uri,
    query: Result<Query<BrowseQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(Query(query)) = query else {
        return error_page(StatusCode::BAD_REQUEST, "bad query: expected ?after=NAME");
    };
    let path = match browse_path(&uri) {
        Ok(path) => path,
        Err(e) => return error_page(StatusCode::BAD_REQUEST, &e.message),
    };
    let built = run_blocking(&state, move |state| {
        status::browse(&state.master, &path, query.after.as_deref()).map(|view| browse_page(&view))
    })
    .await;
    match built {
        Ok(Ok(body)) => html(StatusCode::OK, body),
        Ok(Err(e)) => error_page(status_of(&e), &e.message),
        Err(why) => error_page(StatusCode::SERVICE_UNAVAILABLE, &why.message()),
    }
}

/// Links to the root and to every directory on the way to `path`.
fn breadcrumbs(path: &str) -> String {
    let mut crumbs = String::from(r#"<p class="crumbs"><a href="/browse/">/</a>"#);
    let mut sofar = String::new();
    let components: Vec<&str> = path.split('/').filter(|part| !part.is_empty()).collect();
    for (index, component) in components.iter().enumerate() {
        sofar.push('/');
        sofar.push_str(component);
        if index > 0 {
            crumbs.push('/');
        }
        let _ = write!(
            crumbs,
            r#"<a href="{href}">{name}</a>"#,
            href = escape(&browse_href(&sofar)),
            name = escape(component),
        );
    }
    crumbs.push_str("</p>");
    crumbs
}

fn entry_details(entry: &EntryView) -> String {
    let mut details = format!(
        r#"<dl class="entry"><dt>Kind</dt><dd>{kind}</dd><dt>Owner</dt><dd>{owner}:{group}</dd><dt>Mode</dt><dd><code>{mode}</code> ({octal:04o})</dd><dt>Modified</dt><dd>{modified}</dd><dt>Inode</dt><dd>{inode}</dd>"#,
        kind = entry.kind,
        owner = escape(&entry.owner),
        group = escape(&entry.group),
        mode = mode_text(entry.kind, entry.mode),
        octal = entry.mode & 0o7777,
        modified = format_utc_ms(entry.modified_ns / 1_000_000),
        inode = entry.inode,
    );
    if entry.kind == "file" {
        let _ = write!(
            details,
            r#"<dt>Size</dt><dd>{size}</dd><dt>Replication</dt><dd>{replication}</dd><dt>Block size</dt><dd>{block}</dd><dt>Pieces</dt><dd>{pieces}</dd><dt>Links</dt><dd>{links}</dd>"#,
            size = bytes_cell(entry.size_bytes),
            replication = entry.replication,
            block = format_bytes(entry.block_bytes),
            pieces = entry.block_count,
            links = entry.links,
        );
    }
    details.push_str("</dl>");
    details
}

/// A page of the file browser.
pub fn browse_page(view: &BrowseView) -> String {
    let mut body = breadcrumbs(&view.path);
    let _ = write!(
        body,
        r#"<section class="card" id="entry"><h2>{name}</h2>{details}"#,
        name = escape(&view.path),
        details = entry_details(&view.entry),
    );
    if let Some(target) = &view.link_target {
        let _ = write!(
            body,
            r#"<p>Symbolic link to <code class="target">{}</code></p>"#,
            escape(target)
        );
    }
    body.push_str("</section>");
    if let Some(listing) = &view.listing {
        body.push_str(&listing_table(&view.path, listing));
    }
    if let Some(file) = &view.file {
        body.push_str(&piece_table(file));
    }
    page(&format!("dfs: {}", view.path), false, &body)
}

fn listing_table(path: &str, listing: &status::Listing) -> String {
    let mut table = String::from(
        r#"<section class="card" id="listing"><h2>Entries</h2><div class="table"><table><thead><tr><th>Name</th><th>Kind</th><th class="num">Size</th><th>Owner</th><th>Group</th><th>Mode</th><th>Modified</th></tr></thead><tbody>"#,
    );
    if listing.entries.is_empty() {
        table.push_str(r#"<tr><td colspan="7">no entries</td></tr>"#);
    }
    for entry in &listing.entries {
        let name = if entry.kind == "directory" {
            format!("{}/", entry.name)
        } else {
            entry.name.clone()
        };
        let size = if entry.kind == "directory" {
            String::new()
        } else {
            bytes_cell(entry.size_bytes)
        };
        let _ = write!(
            table,
            r#"<tr class="entry"><td class="wrap"><a href="{href}">{name}</a></td><td>{kind}</td><td class="num">{size}</td><td>{owner}</td><td>{group}</td><td><code>{mode}</code></td><td>{modified}</td></tr>"#,
            href = escape(&browse_href(&child_path(path, &entry.name))),
            name = escape(&name),
            kind = entry.kind,
            owner = escape(&entry.owner),
            group = escape(&entry.group),
            mode = mode_text(entry.kind, entry.mode),
            modified = format_utc_ms(entry.modified_ns / 1_000_000),
        );
    }
    table.push_str("</tbody></table></div>");
    if listing.more {
        let next = listing
            .entries
            .last()
            .map(|entry| {
                format!(
                    r#" <a href="{href}?after={after}">Next entries</a>"#,
                    href = escape(&browse_href(path)),
                    after = escape(&utf8_percent_encode(&entry.name, COMPONENT).to_string()),
                )
            })
            .unwrap_or_default();
        let _ = write!(
            table,
            r#"<p class="note more">Showing {} entries; more follow.{next}</p>"#,
            listing.entries.len()
        );
    }
    table.push_str("</section>");
    table
}

fn piece_table(file: &PieceList) -> String {
    let mut table = String::from(
        r#"<section class="card" id="blocks"><h2>Blocks</h2><div class="table"><table><thead><tr><th class="num">#</th><th class="num">Offset</th><th class="num">Length</th><th>Block</th><th>Replicas</th></tr></thead><tbody>"#,
    );
    if file.pieces.is_empty() {
        table.push_str(r#"<tr><td colspan="5">no blocks</td></tr>"#);
    }
    for piece in &file.pieces {
        let block = match &piece.block {
            Some(id) => format!("<code>{}</code>", escape(id)),
            None => "hole".to_string(),
        };
        let replicas = if piece.block.is_none() {
            String::new()
        } else if piece.replicas.is_empty() {
            r#"<span class="bad">no replica known</span>"#.to_string()
        } else {
            piece
                .replicas
                .iter()
                .map(|replica| {
                    format!(
                        r#"<span class="replica" title="minion {id}">{address} <span class="state state-{state}">{state}</span></span>"#,
                        id = escape(&replica.minion),
                        address = escape(&replica.address),
                        state = replica.state,
                    )
                })
                .collect::<Vec<_>>()
                .join(" ")
        };
        let _ = write!(
            table,
            r#"<tr class="piece"><td class="num">{index}</td><td class="num">{offset}</td><td class="num">{length}</td><td>{block}</td><td class="wrap">{replicas}</td></tr>"#,
            index = piece.index,
            offset = bytes_cell(piece.offset_bytes),
            length = bytes_cell(piece.length_bytes),
        );
    }
    table.push_str("</tbody></table></div>");
    if file.more {
        let _ = write!(
            table,
            r#"<p class="note more">Showing the first {} pieces; more follow (<code>dfs stat</code> lists them all).</p>"#,
            file.pieces.len()
        );
    }
    table.push_str("</section>");
    table
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::{Listing, PieceView, ReplicaView};

    fn entry(name: &str, kind: &'static str) -> EntryView {
        EntryView {
            name: name.to_string(),
            kind,
            inode: 7,
            size_bytes: 1536,
            owner: "alice".into(),
            group: "staff".into(),
            mode: 0o644,
            modified_ns: 1_700_000_000_000_000_000,
            links: 1,
            replication: 3,
            block_bytes: 64 << 20,
            block_count: 1,
        }
    }

    fn directory(entries: Vec<EntryView>, more: bool) -> BrowseView {
        BrowseView {
            path: "/data".into(),
            entry: entry("data", "directory"),
            listing: Some(Listing {
                entries,
                more,
                limit: 1000,
            }),
            file: None,
            link_target: None,
        }
    }

    #[test]
    fn names_are_shown_as_text_never_as_markup() {
        // A name holds anything but '/' and NUL.
        let hostile = "<script>alert('x')\\<\\script>";
        let page = browse_page(&directory(vec![entry(hostile, "file")], false));
        assert!(!page.contains("<script>"), "{page}");
        assert!(
            page.contains("&lt;script&gt;alert(&#39;x&#39;)\\&lt;\\script&gt;"),
            "{page}"
        );
        // The link to it is percent-encoded, the quote included.
        assert!(
            page.contains("/browse/data/%3Cscript%3Ealert%28%27x%27%29%5C%3C%5Cscript%3E"),
            "{page}"
        );
        let mut link = directory(Vec::new(), false);
        link.listing = None;
        link.entry = entry("l", "symlink");
        link.link_target = Some("\"><img src=x>".into());
        let page = browse_page(&link);
        assert!(!page.contains("<img"), "{page}");
        assert!(page.contains("&quot;&gt;&lt;img src=x&gt;"), "{page}");
    }

    #[test]
    fn a_long_directory_says_more_follow_with_a_link_to_the_next_page() {
        let page = browse_page(&directory(vec![entry("a b", "file")], true));
        assert!(page.contains("more follow"), "{page}");
        assert!(
            page.contains(r#"href="/browse/data?after=a%20b""#),
            "{page}"
        );
        let page = browse_page(&directory(vec![entry("a", "file")], false));
        assert!(!page.contains("more follow"), "{page}");
    }

    #[test]
    fn a_file_lists_its_blocks_and_the_minions_holding_them() {
        let view = BrowseView {
            path: "/f".into(),
            entry: entry("f", "file"),
            listing: None,
            file: Some(PieceList {
                pieces: vec![
                    PieceView {
                        index: 0,
                        offset_bytes: 0,
                        length_bytes: 1536,
                        block: Some("blk_00000000000000ab".into()),
                        block_offset_bytes: 0,
                        block_length_bytes: 1536,
                        replicas: vec![ReplicaView {
                            minion: "0000000000000001".into(),
                            address: "127.0.0.1:7071".into(),
                            state: "dead",
                        }],
                    },
                    PieceView {
                        index: 1,
                        offset_bytes: 1536,
                        length_bytes: 100,
                        block: None,
                        block_offset_bytes: 0,
                        block_length_bytes: 0,
                        replicas: Vec::new(),
                    },
                ],
                more: false,
                limit: 512,
            }),
            link_target: None,
        };
        let page = browse_page(&view);
        assert!(page.contains("blk_00000000000000ab"), "{page}");
        assert!(page.contains("127.0.0.1:7071"), "{page}");
        assert!(page.contains(r#"class="state state-dead""#), "{page}");
        assert!(page.contains(">hole<"), "{page}");
    }

    #[test]
    fn escaping_covers_every_special_character() {
        assert_eq!(
            escape(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
        assert_eq!(escape("plain ünïcode"), "plain ünïcode");
    }

    #[test]
    fn browse_paths_are_decoded_and_checked() {
        let path = |uri: &str| browse_path(&uri.parse::<Uri>().expect("a URI"));
        assert_eq!(path("/browse").expect("root").as_str(), "/");
        assert_eq!(path("/browse/").expect("root").as_str(), "/");
        assert_eq!(path("/browse/a%20b/c").expect("decoded").as_str(), "/a b/c");
        assert_eq!(
            path("/browse/%3Cscript%3E").expect("decoded").as_str(),
            "/<script>"
        );
        let error = path("/browse/a//b").expect_err("an empty component");
        assert_eq!(error.kind, ErrorKind::InvalidArgument);
        assert!(error.message.contains("empty component"), "{error:?}");
        let error = path("/browse/%FF").expect_err("not UTF-8");
        assert!(error.message.contains("not valid UTF-8"), "{error:?}");
        let error = path("/browse/a%00b").expect_err("a NUL");
        assert!(error.message.contains("NUL"), "{error:?}");
    }

    #[test]
    fn formats() {
        assert_eq!(format_utc_ms(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(format_utc_ms(1_700_000_000_000), "2023-11-14 22:13:20 UTC");
        assert_eq!(format_utc_ms(951_782_400_000), "2000-02-29 00:00:00 UTC");
        assert_eq!(format_bytes(512), "512 B");
        assert_eq!(format_bytes(1536), "1.5 KiB");
        assert_eq!(format_bytes(3 << 30), "3.0 GiB");
        assert_eq!(format_age_ms(850), "850 ms");
        assert_eq!(format_age_ms(12_500), "12 s");
        assert_eq!(format_age_ms(600_000), "10 min");
        assert_eq!(mode_text("file", 0o644), "-rw-r--r--");
        assert_eq!(mode_text("directory", 0o2775), "drwxrwsr-x");
        assert_eq!(mode_text("directory", 0o1777), "drwxrwxrwt");
        assert_eq!(mode_text("file", 0o4644), "-rwSr--r--");
        assert_eq!(browse_href("/"), "/browse/");
        assert_eq!(browse_href("/a b/ü"), "/browse/a%20b/%C3%BC");
    }
}
