//! The client's connection to the master, and how it rides out a master
//! that is down or starting: a request that certainly was not applied (the
//! connection could not be made, or the master answered `Starting` or
//! `Busy`) is sent again after a pause that grows, until `DFS_MASTER_WAIT`
//! (a minute by default) has passed since the first try. A request whose
//! connection broke after it was sent may have been applied: it is sent
//! again only when the caller says that is safe (lookups, and changes the
//! master applies once however often they come); otherwise the error says
//! it is not known whether the change was made.

use std::sync::Arc;
use std::time::{Duration, Instant};

use dfs_engine::identity::Identity;
use dfs_engine::limits::{CONNECT_TIMEOUT_MS, IO_TIMEOUT_MS};
use dfs_engine::msg::{Credentials, ErrorKind, MasterRequest, MasterResponse, RemoteError};
use dfs_engine::rpc::Connection;
use dfs_engine::{units, Error, Result};

/// The environment variable that sets how long a client waits for a
/// master that is down or starting, e.g. `DFS_MASTER_WAIT=10s`; `0` fails
/// at once.
pub const MASTER_WAIT_VARIABLE: &str = "DFS_MASTER_WAIT";
/// How long a client waits for the master when nobody says otherwise.
pub const MASTER_WAIT_DEFAULT: Duration = Duration::from_secs(60);
/// The first pause before a request goes again; each one after doubles,
/// up to `RETRY_PAUSE_MAX_MS`.
const RETRY_PAUSE_FIRST_MS: u64 = 50;
const RETRY_PAUSE_MAX_MS: u64 = 2_000;
/// A wait this long is told to the user once, so a pause is not a mystery.
const WAIT_NOTICE_AFTER_MS: u64 = 3_000;

/// `DFS_MASTER_WAIT`, or the default.
pub fn master_wait_from_environment() -> Result<Duration> {
    match std::env::var(MASTER_WAIT_VARIABLE) {
        Ok(text) => units::parse_duration(&text)
            .map_err(|error| Error::Invalid(format!("{MASTER_WAIT_VARIABLE}: {error}"))),
        Err(std::env::VarError::NotPresent) => Ok(MASTER_WAIT_DEFAULT),
        Err(error) => Err(Error::Invalid(format!("{MASTER_WAIT_VARIABLE}: {error}"))),
    }
}

/// Whether a request may go again after its connection broke once it was
/// sent (when it may have been applied).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Resend {
    /// Lookups, and changes the master applies once however often they
    /// come (a commit of the same block, an abort).
    Always,
    /// Changes a second copy of which would not do the same: sent again
    /// only while it is certain the first one was not applied.
    UntilSent,
}

/// What a call answered (an `Error` answer too), and whether it went again
/// after its connection broke once it was sent (so an earlier copy may have
/// been applied, and an error may be about what that copy did).
pub(crate) struct Answer {
    pub(crate) response: MasterResponse,
    pub(crate) resent: bool,
}

/// One kept connection to the master, opened again as needed.
pub(crate) struct MasterLink {
    address: String,
    credentials: Credentials,
    /// Proved on every connection opened, when the client has one.
    identity: Option<Arc<Identity>>,
    connection: Option<Connection>,
    wait: Duration,
    /// Told once per link: the client is waiting for the master.
    waited_notice: bool,
}

impl MasterLink {
    pub(crate) fn new(
        address: &str,
        credentials: Credentials,
        identity: Option<Arc<Identity>>,
        wait: Duration,
    ) -> MasterLink {
        MasterLink {
            address: address.to_string(),
            credentials,
            identity,
            connection: None,
            wait,
            waited_notice: false,
        }
    }

    pub(crate) fn address(&self) -> &str {
        &self.address
    }

    pub(crate) fn credentials(&self) -> &Credentials {
        &self.credentials
    }

    pub(crate) fn identity(&self) -> Option<&Arc<Identity>> {
        self.identity.as_ref()
    }

    /// How long calls wait for a master that is down or starting.
    pub(crate) fn wait(&self) -> Duration {
        self.wait
    }

    /// Drops the connection; the next call opens a new one. The master
    /// aborts the writes the connection left open.
    pub(crate) fn disconnect(&mut self) {
        self.connection = None;
    }

    /// Opens the connection now if none is open, waiting for the master as
    /// calls do.
    pub(crate) fn connect(&mut self, notice: &dyn Fn(&str)) -> Result<()> {
        let started = Instant::now();
        let mut pause = Duration::from_millis(RETRY_PAUSE_FIRST_MS);
        loop {
            match self.open() {
                Ok(()) => return Ok(()),
                Err(error) if !is_worth_waiting(&error) => return Err(error),
                Err(error) => {
                    self.pause_or_fail(started, self.wait, &mut pause, error, notice)?;
                }
            }
        }
    }

    fn open(&mut self) -> Result<()> {
        if let Some(connection) = &mut self.connection {
            // A kept connection the master closed (it restarted): a request
            // sent on it would be lost without saying whether it arrived.
            if connection.is_quiet() {
                return Ok(());
            }
            self.connection = None;
        }
        let connection = open_master(&self.address, self.identity.as_deref())?;
        self.connection = Some(connection);
        Ok(())
    }

    /// Sends `request` and returns the answer, waiting for a master that is
    /// down or starting as the module says. `notice` hears once when the
    /// wait gets long.
    pub(crate) fn call(
        &mut self,
        request: &MasterRequest,
        resend: Resend,
        notice: &dyn Fn(&str),
    ) -> Result<Answer> {
        self.call_waiting(request, resend, self.wait, notice)
    }

    /// Sends `request` once, without waiting for a master that is down or
    /// starting: for best-effort calls on the way out (an abort the master
    /// also makes itself when the connection closes).
    pub(crate) fn call_once(&mut self, request: &MasterRequest) -> Result<MasterResponse> {
        self.call_waiting(request, Resend::UntilSent, Duration::ZERO, &|_: &str| {})
            .map(|answer| answer.response)
    }

    fn call_waiting(
        &mut self,
        request: &MasterRequest,
        resend: Resend,
        wait: Duration,
        notice: &dyn Fn(&str),
    ) -> Result<Answer> {
        let started = Instant::now();
        let mut pause = Duration::from_millis(RETRY_PAUSE_FIRST_MS);
        let mut resent = false;
        let mut sent_before = false;
        loop {
            if let Err(error) = self.open() {
                if !is_worth_waiting(&error) {
                    return Err(error);
                }
                self.pause_or_fail(started, wait, &mut pause, error, notice)?;
                continue;
            }
            let Some(connection) = self.connection.as_mut() else {
                continue;
            };
            resent |= sent_before;
            match connection.call::<_, MasterResponse>(&self.credentials, request.clone()) {
                Ok(MasterResponse::Error(error)) if is_transient(error.kind) => {
                    // Not applied: the master refused it as a whole. A busy
                    // master may have refused the connection itself (and
                    // closed it): the next try opens a new one.
                    if error.kind == ErrorKind::Busy {
                        self.connection = None;
                    }
                    self.pause_or_fail(started, wait, &mut pause, Error::Remote(error), notice)?;
                }
                Ok(response) => return Ok(Answer { response, resent }),
                Err(error) if error.is_connection_error() => {
                    self.connection = None;
                    let error = master_error(&self.address, error);
                    if resend == Resend::UntilSent {
                        let shown = format!("{request:?}");
                        let name = shown.split([' ', '(', '{']).next().unwrap_or_default();
                        return Err(Error::Invalid(format!(
                            "{error}; the connection broke after {name} was sent, so it is not known whether it was applied"
                        )));
                    }
                    sent_before = true;
                    self.pause_or_fail(started, wait, &mut pause, error, notice)?;
                }
                Err(error) => return Err(master_error(&self.address, error)),
            }
        }
    }

    /// Sleeps before the next try, or returns `error` once the wait is over.
    fn pause_or_fail(
        &mut self,
        started: Instant,
        wait: Duration,
        pause: &mut Duration,
        error: Error,
        notice: &dyn Fn(&str),
    ) -> Result<()> {
        let waited = started.elapsed();
        if waited + *pause > wait {
            return Err(error);
        }
        if !self.waited_notice && waited >= Duration::from_millis(WAIT_NOTICE_AFTER_MS) {
            self.waited_notice = true;
            notice(&format!(
                "waiting up to {:?} for the master at {} ({error}); {MASTER_WAIT_VARIABLE} sets how long",
                self.wait, self.address
            ));
        }
        std::thread::sleep(*pause);
        *pause = (*pause * 2).min(Duration::from_millis(RETRY_PAUSE_MAX_MS));
        Ok(())
    }
}

/// Answers that say the master did nothing with the request, for now.
fn is_transient(kind: ErrorKind) -> bool {
    matches!(kind, ErrorKind::Starting | ErrorKind::Busy)
}

/// True for a failure to open a connection that waiting may cure (the
/// master down, restarting or busy), false for a refusal (of the
/// client's identity) that it will not.
fn is_worth_waiting(error: &Error) -> bool {
    match error {
        Error::Remote(remote) => is_transient(remote.kind),
        other => other.is_connection_error(),
    }
}

/// Opens a connection to the master at `address` and proves `identity` on
/// it, if the client has one: then over TLS (`dfs_engine::tls`), which the
/// proof covers.
pub(crate) fn open_master(address: &str, identity: Option<&Identity>) -> Result<Connection> {
    open_master_with_timeouts(address, identity, Duration::from_millis(IO_TIMEOUT_MS))
}

/// `open_master` with the given I/O timeout (connecting takes at most the
/// shorter of it and `CONNECT_TIMEOUT_MS`).
pub(crate) fn open_master_with_timeouts(
    address: &str,
    identity: Option<&Identity>,
    timeout: Duration,
) -> Result<Connection> {
    let connect_timeout = timeout.min(Duration::from_millis(CONNECT_TIMEOUT_MS));
    let connection = match identity {
        Some(_) => Connection::open_tls(address, connect_timeout, timeout),
        None => Connection::open_with_timeouts(address, connect_timeout, timeout),
    }
    .map_err(|error| master_error(address, error))?;
    prove_identity(connection, address, identity)
}

fn prove_identity(
    mut connection: Connection,
    address: &str,
    identity: Option<&Identity>,
) -> Result<Connection> {
    let Some(identity) = identity else {
        return Ok(connection);
    };
    match identity.authenticate(&mut connection, address) {
        Ok(()) => Ok(connection),
        Err(Error::Remote(refused)) if !is_transient(refused.kind) => {
            Err(Error::Remote(RemoteError::new(
                refused.kind,
                format!(
                    "the master at {address} refused this client's identity: {}",
                    refused.message
                ),
            )))
        }
        Err(error) => Err(master_error(address, error)),
    }
}

/// Names the master in errors of the connection to it, so that "connection
/// refused" says what refused.
pub(crate) fn master_error(address: &str, error: Error) -> Error {
    match error {
        Error::Io { context, cause } if context == format!("connect to {address}") => Error::Io {
            context: format!("connect to the master at {address}"),
            cause,
        },
        Error::Io { context, cause } if !context.contains(address) => Error::Io {
            context: format!("master {address}: {context}"),
            cause,
        },
        Error::Protocol(detail) => Error::Protocol(format!("master {address}: {detail}")),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_master_that_never_answers_is_waited_for_no_longer_than_asked() {
        // A port nothing listens on: every connect is refused at once.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let address = listener.local_addr().expect("address").to_string();
        drop(listener);
        let wait = Duration::from_millis(400);
        let mut link = MasterLink::new(&address, Credentials::default(), None, wait);
        let notices = std::cell::RefCell::new(Vec::new());
        let started = Instant::now();
        let error = link
            .call(
                &MasterRequest::ClusterReport,
                Resend::Always,
                &|text: &str| notices.borrow_mut().push(text.to_string()),
            )
            .err()
            .expect("nobody answers");
        let waited = started.elapsed();
        assert!(waited <= wait + Duration::from_millis(300), "{waited:?}");
        assert!(
            error.to_string().contains("connect to the master at"),
            "{error}"
        );
        let mut immediate = MasterLink::new(&address, Credentials::default(), None, Duration::ZERO);
        let started = Instant::now();
        assert!(immediate
            .call(&MasterRequest::ClusterReport, Resend::Always, &|_: &str| {})
            .is_err());
        assert!(started.elapsed() < Duration::from_millis(200));
    }

    /// What a master at its connection limit does with a new connection:
    /// answers the connection as a whole (request id 0) with `Busy`, and
    /// closes it once the peer has sent its request.
    fn refuse_as_busy(listener: &std::net::TcpListener) {
        use dfs_engine::msg::RemoteError;
        use dfs_engine::wire::{self, FrameKind, CONNECTION_REQUEST_ID};
        use std::io::Read;

        let busy = MasterResponse::Error(RemoteError::new(
            ErrorKind::Busy,
            "master busy: 1024 connections open",
        ));
        let (mut refused, _) = listener.accept().expect("accept the refused connection");
        wire::write_message(
            &mut refused,
            FrameKind::Response,
            CONNECTION_REQUEST_ID,
            &busy,
        )
        .expect("refuse");
        refused
            .shutdown(std::net::Shutdown::Write)
            .expect("shut down");
        let mut drained = Vec::new();
        let _ = refused.read_to_end(&mut drained);
    }

    /// A refusal answered with request id 0 is "master busy", not a
    /// mismatched answer: the client tries again on a new connection, and
    /// one that may not wait says the master is busy.
    #[test]
    fn a_connection_refused_as_busy_is_tried_again() {
        use dfs_engine::wire::{self, FrameKind};
        use std::io::Write;

        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let address = listener.local_addr().expect("address").to_string();
        let master = std::thread::spawn(move || {
            refuse_as_busy(&listener);
            let (mut served, _) = listener.accept().expect("accept the next connection");
            let mut buffer = Vec::new();
            let (request_id, _): (u64, dfs_engine::msg::Envelope<MasterRequest>) =
                wire::read_message(&mut served, FrameKind::Request, &mut buffer)
                    .expect("read the request")
                    .expect("a request");
            wire::write_message(
                &mut served,
                FrameKind::Response,
                request_id,
                &MasterResponse::Ok,
            )
            .expect("answer");
            served.flush().expect("flush");
        });
        let mut link = MasterLink::new(
            &address,
            Credentials::default(),
            None,
            Duration::from_secs(10),
        );
        let answer = link
            .call(&MasterRequest::ClusterReport, Resend::Always, &|_: &str| {})
            .expect("answered on the second connection");
        assert!(matches!(answer.response, MasterResponse::Ok));
        master.join().expect("the fake master");

        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let address = listener.local_addr().expect("address").to_string();
        let master = std::thread::spawn(move || refuse_as_busy(&listener));
        let mut impatient = MasterLink::new(&address, Credentials::default(), None, Duration::ZERO);
        let error = impatient
            .call(&MasterRequest::ClusterReport, Resend::Always, &|_: &str| {})
            .err()
            .expect("busy");
        assert!(error.to_string().contains("master busy"), "{error}");
        drop(impatient);
        master.join().expect("the fake master");
    }

    #[test]
    fn busy_and_starting_are_transient_other_answers_are_not() {
        assert!(is_transient(ErrorKind::Starting));
        assert!(is_transient(ErrorKind::Busy));
        for kind in [ErrorKind::NotFound, ErrorKind::NoSpace, ErrorKind::Io] {
            assert!(!is_transient(kind), "{kind:?}");
        }
    }
}
