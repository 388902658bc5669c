//! A network namespace joined to this one by a veth pair, for partition
//! tests: a daemon started inside it (through `exec_prefix`) is reached at
//! `inside_ip`, and reaches the daemons outside at `host_ip`; taking the
//! inside end of the link down cuts it off without touching any other
//! route. Needs root and `ip netns`. Traffic only ever goes to the pair's
//! own addresses.

use std::ffi::OsString;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

/// Namespaces made by this process so far, so two in one process get
/// different names, links and subnets.
static CREATED: AtomicU32 = AtomicU32::new(0);
/// Distinct /30 subnets (and link names) handed out, from 10.200.0.0 up
/// to 10.254.255.255: suites running at once in other processes collide
/// only when their process ids are equal modulo a quarter of this.
const SUBNETS_MAX: u32 = 900_000;

/// Removed (with its links) on drop.
pub struct NetworkNamespace {
    name: String,
    inside_link: String,
    host_link: String,
    host_ip: String,
    inside_ip: String,
}

/// Runs `ip` with `args`; the error names the command.
fn ip(args: &[&str]) -> Result<(), String> {
    let output = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip {}: {e}", args.join(" ")))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

/// The address `offset` (1 or 2) in /30 subnet number `subnet`.
fn subnet_address(subnet: u32, offset: u32) -> String {
    let base = subnet * 4;
    format!(
        "10.{}.{}.{}",
        200 + base / 65_536,
        (base / 256) % 256,
        base % 256 + offset
    )
}

impl NetworkNamespace {
    /// Makes the namespace and its link, up; the error says why it could
    /// not be made (not root, no `ip`), for a test to print and skip.
    pub fn create() -> Result<NetworkNamespace, String> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return Err("network namespaces need root".into());
        }
        let made = CREATED.fetch_add(1, Ordering::Relaxed);
        // Four per process: room for a few namespaces in one suite.
        let index = (std::process::id() % (SUBNETS_MAX / 4)) * 4 + made % 4;
        let namespace = NetworkNamespace {
            name: format!("dfs-part-{}-{made}", std::process::id()),
            inside_link: format!("dfsn{index}"),
            host_link: format!("dfsh{index}"),
            host_ip: subnet_address(index, 1),
            inside_ip: subnet_address(index, 2),
        };
        // On an error the namespace is dropped, removing what was made.
        namespace
            .set_up()
            .map_err(|error| format!("cannot make a network namespace: {error}"))?;
        Ok(namespace)
    }

    fn set_up(&self) -> Result<(), String> {
        ip(&["netns", "add", &self.name])?;
        ip(&[
            "link",
            "add",
            &self.host_link,
            "type",
            "veth",
            "peer",
            "name",
            &self.inside_link,
        ])?;
        ip(&["link", "set", &self.inside_link, "netns", &self.name])?;
        let host_address = format!("{}/30", self.host_ip);
        ip(&["addr", "add", &host_address, "dev", &self.host_link])?;
        ip(&["link", "set", &self.host_link, "up"])?;
        let inside_address = format!("{}/30", self.inside_ip);
        self.inside(&["addr", "add", &inside_address, "dev", &self.inside_link])?;
        self.inside(&["link", "set", &self.inside_link, "up"])?;
        self.inside(&["link", "set", "lo", "up"])
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The address on this side of the link: daemons outside listen on it
    /// so the inside can reach them.
    pub fn host_ip(&self) -> &str {
        &self.host_ip
    }

    /// The address inside the namespace.
    pub fn inside_ip(&self) -> &str {
        &self.inside_ip
    }

    /// The command words that run a program inside the namespace
    /// (`ip netns exec NAME`): `ip` execs the program, so the process id
    /// stays the program's and signals reach it.
    pub fn exec_prefix(&self) -> Vec<OsString> {
        ["ip", "netns", "exec", &self.name]
            .into_iter()
            .map(OsString::from)
            .collect()
    }

    /// Runs `ip` inside the namespace.
    fn inside(&self, args: &[&str]) -> Result<(), String> {
        let mut all = vec!["netns", "exec", &self.name, "ip"];
        all.extend_from_slice(args);
        ip(&all)
    }

    /// Cuts the namespace off: its end of the link goes down.
    pub fn cut(&self) {
        self.inside(&["link", "set", &self.inside_link, "down"])
            .unwrap_or_else(|e| panic!("take the link down: {e}"));
    }

    /// Brings its end of the link back up.
    pub fn heal(&self) {
        self.inside(&["link", "set", &self.inside_link, "up"])
            .unwrap_or_else(|e| panic!("bring the link up: {e}"));
    }
}

impl Drop for NetworkNamespace {
    fn drop(&mut self) {
        // Deleting the namespace deletes its end of the pair, and with it
        // the other end.
        let _ = ip(&["netns", "del", &self.name]);
        let _ = ip(&["link", "del", &self.host_link]);
    }
}
