//! The master's status page and JSON API (`--http`) on real processes: the
//! JSON answers follow writes (used bytes, block counts), a minion's death
//! (its state) and healing (under-replicated blocks, then none, and the
//! copies done); paths are checked; an address other machines reach needs
//! a key. The page itself is opened in headless Chromium against a cluster
//! with a dead minion: the dumped DOM shows it dead and the file browser
//! lists a file (names shown as text), and screenshots are kept.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use dfs_testkit::{utf8, write_random_file, Cluster, ClusterOptions};
use serde_json::Value;

const MIB: u64 = 1 << 20;
/// Long enough for a minion to be declared dead and its blocks copied on
/// a loaded machine.
const HEAL_TIMEOUT: Duration = Duration::from_secs(90);
/// How long one HTTP request may take.
const HTTP_TIMEOUT: Duration = Duration::from_secs(20);
/// How long one Chromium run may take.
const CHROMIUM_TIMEOUT: Duration = Duration::from_secs(120);

/// Heartbeats every 200 ms, stale after 1 s, dead after 3 s, the status
/// page on a free loopback port.
fn options(minions: usize) -> ClusterOptions {
    ClusterOptions {
        minions,
        heartbeat_interval: "200ms",
        stale_after: Some("1s"),
        dead_after: Some("3s"),
        master_arguments: vec!["--http", "127.0.0.1:0"],
        ..ClusterOptions::default()
    }
}

/// One HTTP answer.
struct Answer {
    status: u16,
    content_type: String,
    body: String,
}

/// `GET path` from the server at `address`, on a connection of its own.
fn http_get(address: &str, path: &str) -> Answer {
    http_request(address, "GET", path)
}

fn http_request(address: &str, method: &str, path: &str) -> Answer {
    let mut stream =
        TcpStream::connect(address).unwrap_or_else(|e| panic!("connect to {address}: {e}"));
    stream
        .set_read_timeout(Some(HTTP_TIMEOUT))
        .expect("set a read timeout");
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    )
    .unwrap_or_else(|e| panic!("send {method} {path}: {e}"));
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .unwrap_or_else(|e| panic!("read the answer to {method} {path}: {e}"));
    let split = raw
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("{method} {path}: no end of headers in {raw:?}"));
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let mut body = raw[split + 4..].to_vec();
    let mut lines = head.lines();
    let status_line = lines.next().unwrap_or_default();
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("{method} {path}: bad status line {status_line:?}"));
    let mut content_type = String::new();
    let mut chunked = false;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        match name.trim().to_ascii_lowercase().as_str() {
            "content-type" => content_type = value.trim().to_string(),
            "transfer-encoding" => chunked = value.trim().eq_ignore_ascii_case("chunked"),
            _ => {}
        }
    }
    if chunked {
        body = dechunk(&body);
    }
    Answer {
        status,
        content_type,
        body: String::from_utf8(body).expect("a UTF-8 body"),
    }
}

/// The body of a chunked transfer.
fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    loop {
        let end = raw
            .windows(2)
            .position(|window| window == b"\r\n")
            .expect("a chunk size line");
        let size_text = String::from_utf8_lossy(&raw[..end]).to_string();
        let size = usize::from_str_radix(size_text.trim(), 16).expect("a hex chunk size");
        if size == 0 {
            return body;
        }
        body.extend_from_slice(&raw[end + 2..end + 2 + size]);
        raw = &raw[end + 2 + size + 2..];
    }
}

/// `GET path` answered 200 with JSON, parsed.
fn get_json(address: &str, path: &str) -> Value {
    let answer = http_get(address, path);
    assert_eq!(answer.status, 200, "GET {path}: {}", answer.body);
    assert_eq!(answer.content_type, "application/json", "GET {path}");
    serde_json::from_str(&answer.body)
        .unwrap_or_else(|e| panic!("GET {path}: not JSON ({e}): {}", answer.body))
}

fn number(value: &Value, pointer: &str) -> u64 {
    value
        .pointer(pointer)
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("no number at {pointer} in {value}"))
}

/// The text field `field` `/api/v1/minions` gives the minion at `address`.
fn minion_field(http: &str, address: &str, field: &str) -> String {
    let minions = get_json(http, "/api/v1/minions");
    minions["minions"]
        .as_array()
        .expect("a minion list")
        .iter()
        .find(|minion| minion["address"] == address)
        .and_then(|minion| minion[field].as_str())
        .unwrap_or_else(|| panic!("{address} is not listed with a {field}: {minions}"))
        .to_string()
}

fn minion_state(http: &str, address: &str) -> String {
    minion_field(http, address, "state")
}

fn minion_id(http: &str, address: &str) -> String {
    minion_field(http, address, "id")
}

/// Sum of a per-minion number over every minion.
fn minions_total(http: &str, field: &str) -> u64 {
    let minions = get_json(http, "/api/v1/minions");
    minions["minions"]
        .as_array()
        .expect("a minion list")
        .iter()
        .map(|minion| minion[field].as_u64().expect("a number"))
        .sum()
}

fn wait_for_state(cluster: &Cluster, http: &str, address: &str, state: &str) {
    cluster.wait_for(
        || minion_state(http, address) == state,
        HEAL_TIMEOUT,
        &format!("{address} shown {state}"),
    );
}

/// Puts `length_bytes` of random bytes in 1 MiB blocks at `remote`.
fn put(cluster: &Cluster, remote: &str, seed: u64, length_bytes: u64) {
    let local = cluster.dir().join(format!("local-{seed}"));
    write_random_file(&local, seed, length_bytes);
    cluster.dfs_ok(["put", "--block-size", "1M", utf8(&local), remote]);
}

#[test]
fn the_json_api_follows_writes_a_minion_dying_and_healing() {
    let mut cluster = Cluster::start(options(4));
    let http = cluster.master_http_address();

    let before = get_json(&http, "/api/v1/cluster");
    assert_eq!(number(&before, "/minions/live"), 4, "{before}");
    assert_eq!(number(&before, "/namespace/files"), 0, "{before}");
    assert_eq!(number(&before, "/namespace/directories"), 1, "{before}");
    assert_eq!(number(&before, "/health/under_replicated_blocks"), 0);
    assert_eq!(number(&before, "/defaults/replication"), 3);
    assert!(number(&before, "/capacity/capacity_bytes") > 0, "{before}");
    assert_eq!(before["started"], true, "{before}");
    let used_before = number(&before, "/capacity/used_bytes");
    let sequence_before = number(&before, "/journal/last_sequence");

    // The spare minion dies first, so the file lands on the other three
    // and a later death leaves its blocks nowhere to go until it returns.
    let spare = cluster.minion_address(3).to_string();
    cluster.kill_minion(3);
    wait_for_state(&cluster, &http, &spare, "dead");
    let after_death = get_json(&http, "/api/v1/cluster");
    assert_eq!(number(&after_death, "/minions/dead"), 1, "{after_death}");
    assert_eq!(number(&after_death, "/minions/live"), 3, "{after_death}");

    // Writing shows in used bytes, block counts and the journal.
    put(&cluster, "/data", 1, 4 * MIB);
    cluster.wait_for(
        || {
            let now = get_json(&http, "/api/v1/cluster");
            number(&now, "/capacity/used_bytes") >= used_before + 12 * MIB
                && minions_total(&http, "blocks") == 12
        },
        HEAL_TIMEOUT,
        "the used bytes and block counts of three replicas of 4 blocks",
    );
    let written = get_json(&http, "/api/v1/cluster");
    assert_eq!(number(&written, "/namespace/files"), 1, "{written}");
    assert_eq!(number(&written, "/namespace/blocks"), 4, "{written}");
    assert!(number(&written, "/journal/last_sequence") > sequence_before);
    assert!(
        number(&written, "/journal/durable_sequence") <= number(&written, "/journal/last_sequence")
    );

    // The browser's JSON: the root lists the file, the file its blocks.
    let root = get_json(&http, "/api/v1/browse?path=/");
    let names: Vec<&str> = root["listing"]["entries"]
        .as_array()
        .expect("a listing")
        .iter()
        .map(|entry| entry["name"].as_str().expect("a name"))
        .collect();
    assert_eq!(names, ["data"], "{root}");
    let file = get_json(&http, "/api/v1/browse?path=%2Fdata");
    assert_eq!(file["entry"]["kind"], "file", "{file}");
    assert_eq!(number(&file, "/entry/size_bytes"), 4 * MIB);
    let pieces = file["file"]["pieces"].as_array().expect("pieces");
    assert_eq!(pieces.len(), 4, "{file}");
    for piece in pieces {
        let replicas = piece["replicas"].as_array().expect("replicas");
        assert_eq!(replicas.len(), 3, "{piece}");
        assert!(replicas.iter().all(|r| r["state"] == "live"), "{piece}");
        assert!(
            replicas.iter().all(|r| r["address"] != spare.as_str()),
            "{piece}"
        );
    }

    // A holder dies: its blocks are short, and stay short with no minion
    // to copy them to.
    let victim = cluster.minion_address(0).to_string();
    cluster.kill_minion(0);
    wait_for_state(&cluster, &http, &victim, "dead");
    cluster.wait_for(
        || {
            number(
                &get_json(&http, "/api/v1/cluster"),
                "/health/under_replicated_blocks",
            ) == 4
        },
        HEAL_TIMEOUT,
        "4 under-replicated blocks",
    );
    let short = get_json(&http, "/api/v1/cluster");
    assert_eq!(number(&short, "/health/missing_blocks"), 0, "{short}");
    assert_eq!(number(&short, "/healing/copies_done"), 0, "{short}");

    // The spare returns: healing copies the blocks to it, and the count
    // goes back to 0.
    cluster.start_minion(3);
    cluster.wait_for(
        || {
            let now = get_json(&http, "/api/v1/cluster");
            number(&now, "/health/under_replicated_blocks") == 0
                && number(&now, "/healing/copies_done") >= 4
        },
        HEAL_TIMEOUT,
        "healing done: no under-replicated block, 4 copies",
    );
    let healed = get_json(&http, "/api/v1/browse?path=/data");
    for piece in healed["file"]["pieces"].as_array().expect("pieces") {
        let live = piece["replicas"]
            .as_array()
            .expect("replicas")
            .iter()
            .filter(|r| r["state"] == "live")
            .count();
        assert_eq!(live, 3, "{piece}");
    }

    // The charts' series: namespace changes, then copies, show as rates.
    cluster.wait_for(
        || {
            let history = get_json(&http, "/api/v1/history");
            let points = history["points"].as_array().expect("points").clone();
            number(&history, "/interval_ms") == 5000
                && points
                    .iter()
                    .any(|p| p["namespace_ops_per_second"].as_f64() > Some(0.0))
                && points
                    .iter()
                    .any(|p| p["copies_per_second"].as_f64() > Some(0.0))
        },
        Duration::from_secs(30),
        "history points with namespace changes and copies",
    );
}

/// True when some minion's `rate` was above 0 while `command` ran or in
/// the heartbeats just after it (a rate is measured between two
/// heartbeats, so traffic shows at the heartbeat after it); `command`
/// must succeed.
fn seen_while(mut command: std::process::Child, http: &str, rate: &str) -> bool {
    let mut seen = false;
    let mut ended: Option<std::time::Instant> = None;
    while !seen && ended.is_none_or(|at| at.elapsed() < std::time::Duration::from_secs(5)) {
        seen = minions_total(http, rate) > 0;
        if ended.is_none() {
            if let Some(status) = command.try_wait().expect("wait for the command") {
                assert!(status.success(), "{status}");
                ended = Some(std::time::Instant::now());
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    if ended.is_none() {
        assert!(command.wait().expect("wait for the command").success());
    }
    seen
}

/// The minions' read, write and copy rates (from the byte counters in
/// their heartbeats) show while data moves, and go back to 0 after.
#[test]
fn minion_rates_follow_the_traffic() {
    let cluster = Cluster::start(options(2));
    let http = cluster.master_http_address();
    let local = cluster.dir().join("large");
    write_random_file(&local, 11, 48 * MIB);
    let mut put = cluster.dfs_command();
    put.args(["put", "-r", "2", utf8(&local), "/large"]);
    let running = put.spawn().expect("start dfs put");
    assert!(
        seen_while(running, &http, "written_bytes_per_s"),
        "a minion showed a write rate for the put"
    );
    let mut reader = cluster.dfs_command();
    reader
        .args(["cat", "/large"])
        .stdout(std::process::Stdio::null());
    let reading = reader.spawn().expect("start dfs cat");
    assert!(
        seen_while(reading, &http, "read_bytes_per_s"),
        "a minion showed a read rate for the cat"
    );
    // The cluster's throughput over the last minute counts both.
    cluster.wait_for(
        || {
            let status = get_json(&http, "/api/v1/cluster");
            let rate = |name: &str| status["throughput"][name].as_f64().unwrap_or(0.0);
            rate("written_bytes_per_second") > 0.0 && rate("read_bytes_per_second") > 0.0
        },
        HEAL_TIMEOUT,
        "the cluster's throughput to show the put and the cat",
    );
    cluster.wait_for(
        || {
            minions_total(&http, "written_bytes_per_s") == 0
                && minions_total(&http, "read_bytes_per_s") == 0
        },
        HEAL_TIMEOUT,
        "the rates back to 0 once the cluster is idle",
    );
    cluster.assert_clean_logs();
}

#[test]
fn paths_are_checked_and_errors_are_plain() {
    let cluster = Cluster::start(options(1));
    let http = cluster.master_http_address();
    cluster.dfs_ok(["mkdir", "/a b"]);

    let spaced = get_json(&http, "/api/v1/browse?path=/a%20b");
    assert_eq!(spaced["entry"]["kind"], "directory", "{spaced}");
    assert_eq!(spaced["path"], "/a b", "{spaced}");
    let page = http_get(&http, "/browse/a%20b");
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(
        page.content_type.starts_with("text/html"),
        "{}",
        page.content_type
    );

    for (path, status, says) in [
        ("/api/v1/browse?path=/a//b", 400, "empty component"),
        ("/api/v1/browse?path=/missing", 404, "/missing"),
        ("/api/v1/nothing", 404, "no page at /api/v1/nothing"),
    ] {
        let answer = http_get(&http, path);
        assert_eq!(answer.status, status, "{path}: {}", answer.body);
        let error: Value = serde_json::from_str(&answer.body).expect("a JSON error");
        let message = error["error"].as_str().expect("an error message");
        assert!(message.contains(says), "{path}: {message}");
        assert_eq!(error["status"], status, "{path}");
    }
    for (path, status, says) in [
        ("/browse/a//b", 400, "empty component"),
        ("/browse/%FF", 400, "not valid UTF-8"),
        ("/browse/missing", 404, "/missing"),
        ("/nothing", 404, "no page at /nothing"),
    ] {
        let answer = http_get(&http, path);
        assert_eq!(answer.status, status, "{path}: {}", answer.body);
        assert!(answer.content_type.starts_with("text/html"), "{path}");
        assert!(answer.body.contains(says), "{path}: {}", answer.body);
    }
    let posted = http_request(&http, "POST", "/api/v1/cluster");
    assert_eq!(posted.status, 405, "{}", posted.body);
}

#[test]
fn an_http_address_other_machines_reach_needs_a_key() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let output = dfs_testkit::run(
        Command::new(dfs_testkit::binary("dfs-master")).args([
            "--config",
            "/dev/null",
            "--data",
            utf8(&dir.path().join("master")),
            "--listen",
            "127.0.0.1:0",
            "--http",
            "0.0.0.0:0",
        ]),
        None,
        HTTP_TIMEOUT,
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "it started: {stderr}");
    assert!(
        stderr.contains("dfs-master: --http 0.0.0.0:0 is reachable from other machines"),
        "{stderr}"
    );
    assert!(output.stdout.is_empty(), "it printed an address");
}

// --- the page in a browser ---

/// The Chromium binary, or a failure saying how to get it.
fn chromium() -> &'static str {
    let found = Command::new("chromium")
        .arg("--version")
        .output()
        .is_ok_and(|output| output.status.success());
    assert!(
        found,
        "chromium is missing: this test opens the status page in headless Chromium; \
         .ci/run installs it (apt-get install chromium)"
    );
    "chromium"
}

/// Runs headless Chromium on `url` with `arguments` (a profile of its own
/// under `profile`); returns its stdout.
fn run_chromium(profile: &Path, url: &str, arguments: &[&str]) -> String {
    let mut command = Command::new(chromium());
    command
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", utf8(profile)))
        .args(arguments)
        .arg(url);
    let output = dfs_testkit::run(&mut command, None, CHROMIUM_TIMEOUT);
    assert!(
        output.status.success(),
        "chromium {arguments:?} {url} failed: {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).to_string()
}

/// The DOM of `url` after it loaded.
fn dump_dom(profile: &Path, url: &str) -> String {
    run_chromium(profile, url, &["--dump-dom"])
}

/// A screenshot of `url` at `width`x`height` into `file`, checked to be a PNG.
fn screenshot(profile: &Path, url: &str, width: u32, height: u32, file: &Path) {
    run_chromium(
        profile,
        url,
        &[
            &format!("--screenshot={}", utf8(file)),
            &format!("--window-size={width},{height}"),
        ],
    );
    let bytes = std::fs::read(file).unwrap_or_else(|e| panic!("read {}: {e}", file.display()));
    assert!(
        bytes.starts_with(b"\x89PNG\r\n\x1a\n") && bytes.len() > 10_000,
        "{} is no screenshot ({} bytes)",
        file.display(),
        bytes.len()
    );
}

/// `target/test-artifacts`, beside the profile directories of the build
/// this test runs from (target/<profile>/deps/<test>).
fn artifacts_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable");
    let target = exe
        .ancestors()
        .nth(3)
        .expect("the test runs from target/<profile>/deps");
    let dir = target.join("test-artifacts");
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
    dir
}

/// The `<tr ...>...</tr>` of the DOM that opens with `opening`.
fn row<'a>(dom: &'a str, opening: &str) -> &'a str {
    let start = dom
        .find(opening)
        .unwrap_or_else(|| panic!("no {opening} in the DOM:\n{dom}"));
    let end = start + dom[start..].find("</tr>").expect("the end of the row");
    &dom[start..end]
}

#[test]
fn the_page_in_headless_chromium_shows_a_dead_minion_and_lists_files() {
    chromium();
    let mut cluster = Cluster::start(options(3));
    let http = cluster.master_http_address();
    cluster.dfs_ok(["mkdir", "/docs"]);
    put(&cluster, "/docs/report.txt", 7, 3 * MIB + 5);
    put(&cluster, "/docs/<script>alert(1)", 8, 10);

    let victim = cluster.minion_address(1).to_string();
    let victim_id = minion_id(&http, &victim);
    cluster.kill_minion(1);
    wait_for_state(&cluster, &http, &victim, "dead");
    cluster.wait_for(
        || {
            number(
                &get_json(&http, "/api/v1/cluster"),
                "/health/under_replicated_blocks",
            ) > 0
        },
        HEAL_TIMEOUT,
        "the dead minion's blocks counted under-replicated",
    );

    let profile = cluster.dir().join("chromium");
    let overview = dump_dom(&profile, &format!("http://{http}/"));
    let victim_row = row(&overview, &format!(r#"<tr id="minion-{victim_id}""#));
    assert!(
        victim_row.contains(r#"class="state state-dead">dead<"#),
        "{victim_row}"
    );
    assert!(victim_row.contains(&victim), "{victim_row}");
    for index in [0, 2] {
        let address = cluster.minion_address(index).to_string();
        let id = minion_id(&http, &address);
        let live_row = row(&overview, &format!(r#"<tr id="minion-{id}""#));
        assert!(
            live_row.contains(r#"class="state state-live">live<"#),
            "{live_row}"
        );
    }
    assert!(overview.contains(r#"<svg class="chart""#), "charts drawn");
    assert!(
        !overview.contains("<script"),
        "the page has no script:\n{overview}"
    );

    let listing = dump_dom(&profile, &format!("http://{http}/browse/docs"));
    let report_row = row(
        &listing,
        r#"<tr class="entry"><td class="wrap"><a href="/browse/docs/report.txt">"#,
    );
    assert!(report_row.contains("report.txt"), "{report_row}");
    assert!(report_row.contains("3.0 MiB"), "{report_row}");
    // The hostile name is text: escaped in the DOM, no element made of it.
    assert!(listing.contains("&lt;script&gt;alert(1)"), "{listing}");
    assert!(!listing.contains("<script"), "{listing}");

    let details = dump_dom(&profile, &format!("http://{http}/browse/docs/report.txt"));
    assert_eq!(
        details.matches(r#"<tr class="piece">"#).count(),
        4,
        "{details}"
    );
    assert!(details.contains("blk_"), "{details}");
    assert!(
        details.contains(r#"class="state state-dead">dead<"#),
        "{details}"
    );

    // Screenshots, beside the cluster's logs and kept in
    // target/test-artifacts.
    let artifacts = artifacts_dir();
    for (name, width, height) in [
        ("status-page.png", 1280, 1700),
        ("status-page-phone.png", 412, 2400),
        ("status-page-browse.png", 1280, 900),
    ] {
        let url = if name.contains("browse") {
            format!("http://{http}/browse/docs/report.txt")
        } else {
            format!("http://{http}/")
        };
        let file = cluster.dir().join(name);
        screenshot(&profile, &url, width, height, &file);
        std::fs::copy(&file, artifacts.join(name))
            .unwrap_or_else(|e| panic!("copy {} to {}: {e}", file.display(), artifacts.display()));
    }
    eprintln!("screenshots in {}", artifacts.display());
}
