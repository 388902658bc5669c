//! Connections to minions kept open between blocks. A small file is one
//! block, and a new TCP connection per block (with its socket buffers)
//! cost the client as much as the block itself. A connection goes back to
//! the pool only after a complete exchange (a sealed block), and is used
//! again only while young and quiet: the minion closes idle connections.

use std::time::{Duration, Instant};

use dfs_engine::limits::{CONNECT_TIMEOUT_MS, IO_TIMEOUT_MS};
use dfs_engine::rpc::Connection;
use dfs_engine::tls::DataTrust;
use dfs_engine::{units, Error, Result};

use crate::client::Client;

/// Idle minion connections kept per client.
const IDLE_CONNECTIONS_MAX: usize = 16;
/// An idle connection older than this is closed rather than used: well
/// within the minion's idle timeout (`IO_TIMEOUT_MS`).
const IDLE_KEPT_MS: u64 = 10_000;
const _: () = assert!(IDLE_KEPT_MS < IO_TIMEOUT_MS);

/// The environment variable that sets the I/O timeout of minion
/// connections, e.g. `DFS_IO_TIMEOUT=3s`: how long a stalled minion may
/// hold up a read or a write before the client goes to another.
pub const IO_TIMEOUT_VARIABLE: &str = "DFS_IO_TIMEOUT";

/// The I/O timeout for minion connections: `DFS_IO_TIMEOUT` or the default.
pub fn io_timeout_from_environment() -> Result<Duration> {
    match std::env::var(IO_TIMEOUT_VARIABLE) {
        Ok(text) => {
            let timeout = units::parse_duration(&text)
                .map_err(|error| Error::Invalid(format!("{IO_TIMEOUT_VARIABLE}: {error}")))?;
            if timeout.is_zero() {
                return Err(Error::Invalid(format!(
                    "{IO_TIMEOUT_VARIABLE}: {text}: must be more than zero"
                )));
            }
            Ok(timeout)
        }
        Err(std::env::VarError::NotPresent) => Ok(Duration::from_millis(IO_TIMEOUT_MS)),
        Err(error) => Err(Error::Invalid(format!("{IO_TIMEOUT_VARIABLE}: {error}"))),
    }
}

/// How long a client waits on the first member of a pipeline of
/// `members`: its I/O timeout for each member. Each member waits the
/// pipeline timeout for the members behind it before it names a stalled
/// one, so the client, waiting longer than the first member would, blames
/// the member that stalled, not the first one.
pub(crate) fn pipeline_wait(io_timeout: Duration, members: usize) -> Duration {
    io_timeout.saturating_mul(u32::try_from(members).unwrap_or(u32::MAX))
}

/// How connections to minions are made: how long a stalled minion holds
/// a call up, and TLS checked by `trust` when the cluster wants block
/// data encrypted (the master's `DataTrust`).
#[derive(Clone, Debug)]
pub(crate) struct DataLink {
    pub(crate) io_timeout: Duration,
    pub(crate) trust: Option<DataTrust>,
}

impl DataLink {
    /// A new connection to the minion at `address` that waits `io_timeout`
    /// for each send and answer.
    pub(crate) fn open(&self, address: &str, io_timeout: Duration) -> Result<Connection> {
        Connection::open_data(
            address,
            Duration::from_millis(CONNECT_TIMEOUT_MS),
            io_timeout,
            self.trust.as_ref(),
        )
    }
}

/// Idle connections to minions, newest last.
pub(crate) struct MinionConnections {
    idle: Vec<(Connection, Instant)>,
    link: DataLink,
}

impl MinionConnections {
    pub(crate) fn new(io_timeout: Duration) -> MinionConnections {
        MinionConnections {
            idle: Vec::new(),
            link: DataLink {
                io_timeout,
                trust: None,
            },
        }
    }

    pub(crate) fn link(&self) -> &DataLink {
        &self.link
    }

    /// From now on, block data goes over TLS checked by `trust`.
    pub(crate) fn use_tls(&mut self, trust: DataTrust) {
        self.idle.clear();
        self.link.trust = Some(trust);
    }

    /// A connection to the first member of a pipeline of `members`, that
    /// waits `pipeline_wait` for each answer.
    pub(crate) fn connect_pipeline(&mut self, address: &str, members: usize) -> Result<Connection> {
        let mut connection = self.connect(address)?;
        connection.set_io_timeout(pipeline_wait(self.link.io_timeout, members))?;
        Ok(connection)
    }

    /// A connection to `address`: an idle one if a usable one is kept,
    /// else a new one.
    pub(crate) fn connect(&mut self, address: &str) -> Result<Connection> {
        let now = Instant::now();
        let kept = Duration::from_millis(IDLE_KEPT_MS);
        self.idle
            .retain(|(_, since)| now.saturating_duration_since(*since) < kept);
        while let Some(index) = self
            .idle
            .iter()
            .rposition(|(connection, _)| connection.address() == address)
        {
            let (mut connection, _) = self.idle.remove(index);
            if connection.is_quiet() {
                return Ok(connection);
            }
        }
        self.link.open(address, self.link.io_timeout)
    }

    /// Keeps a connection whose exchanges are all complete.
    pub(crate) fn keep(&mut self, connection: Connection) {
        if self.idle.len() >= IDLE_CONNECTIONS_MAX {
            self.idle.remove(0);
        }
        self.idle.push((connection, Instant::now()));
    }
}

impl Client {
    /// Closes the minion connections kept for later blocks.
    pub fn close_idle_connections(&mut self) {
        self.minions.idle.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::net::TcpListener;

    #[test]
    fn quiet_connections_are_used_again_and_closed_ones_are_not() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let address = listener.local_addr().expect("address").to_string();
        let mut pool = MinionConnections::new(Duration::from_secs(5));
        let first = pool.connect(&address).expect("connect");
        let (mut accepted, _) = listener.accept().expect("accept");
        pool.keep(first);
        // Quiet and open: the same connection comes back.
        let again = pool.connect(&address).expect("reuse");
        accepted.write_all(b"x").expect("write");
        accepted.flush().expect("flush");
        std::thread::sleep(Duration::from_millis(50));
        // Unread bytes: not quiet, so a new connection is made.
        pool.keep(again);
        let fresh = pool.connect(&address).expect("new connection");
        let (second, _) = listener.accept().expect("a second connection was made");
        pool.keep(fresh);
        // The peer closes: the kept connection is not used.
        second.shutdown(std::net::Shutdown::Both).expect("shutdown");
        drop(second);
        std::thread::sleep(Duration::from_millis(50));
        let _third = pool.connect(&address).expect("new connection");
        listener.accept().expect("a third connection was made");
        assert!(pool.idle.is_empty());
    }
}
