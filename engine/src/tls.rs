//! TLS on the connections to the master, for clusters with a key.
//!
//! What it is for: privacy and integrity of control traffic (names, sizes,
//! owners, tokens) against an observer or a meddler on the network. Who is
//! who is not TLS's job here: the cluster key and client identities prove
//! that (`auth`, `identity`), so there is no certificate authority to run.
//! The master makes a fresh key pair and a self-signed certificate when it
//! starts (`ServerTls::self_signed`), clients accept any certificate whose
//! handshake signature verifies, and the challenge-response proofs of both
//! sides cover the session's channel binding (an RFC 5705 exporter value,
//! `Half::binding`). A meddler who ends TLS on each side holds two sessions
//! with different bindings, so the master's proof fails at the client and
//! the client's at the master: the proofs authenticate the channel, the
//! channel hides the traffic.
//!
//! TLS 1.3 only, through rustls with the `ring` provider; no session
//! tickets or resumption (every connection makes its own keys, and a
//! quiet idle connection stays quiet).
//!
//! A stream is wrapped as two halves (`Half`) that share it, one to read
//! and one to write, as the blocking code buffers each direction on its
//! own; a plain stream is wrapped the same way, so callers do not care.
//!
//! Block data (`--tls-data`) is different: clients hold no key that could
//! prove a minion, so minions carry ordinary certificates, made at start,
//! for the name `dfs-minion`, signed by the cluster's data authority
//! (`DataAuthority`): an Ed25519 key derived from the cluster key, which
//! every member can derive and no one else can. Clients trust exactly that
//! authority's certificate (`DataTrust`), which the master hands them on
//! the control connection their identity proved (`MasterRequest::DataTrust`);
//! minions derive it themselves. A meddler without the cluster key cannot
//! make a certificate a client accepts, so block data and the tokens that
//! travel with it are readable by the two ends only.

use std::fmt;
use std::io::{self, Read, Write};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    ClientConfig, ClientConnection, DigitallySignedStruct, ServerConfig, ServerConnection,
    SignatureScheme,
};

use crate::error::{Error, Result};

/// Bytes of a channel binding.
pub const BINDING_BYTES: usize = 32;
/// The first byte of a TLS handshake record: a connection that starts with
/// it speaks TLS (a plain one starts with a frame's magic, `b'D'`).
pub const HANDSHAKE_RECORD: u8 = 0x16;
/// The name the master's certificate carries and clients ask for (checked
/// by nobody: the proofs are what authenticate).
const SERVER_NAME: &str = "dfs-master";
/// RFC 5705 exporter label of the channel binding.
const EXPORTER_LABEL: &[u8] = b"EXPORTER-dfs-channel-binding";
/// The name minions' certificates carry and data connections ask for.
const MINION_NAME: &str = "dfs-minion";
/// Derivation label of the data authority's key (`ClusterKey::derive`).
#[cfg(feature = "tls-server")]
const DATA_AUTHORITY_LABEL: &[u8] = b"dfs data authority v1";
/// A PKCS#8 v1 Ed25519 private key is this prefix and the 32-byte seed.
#[cfg(feature = "tls-server")]
const ED25519_PKCS8_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];
/// Most bytes of a data authority certificate a client takes.
pub const AUTHORITY_CERTIFICATE_BYTES_MAX: usize = 4096;

/// The *ring* provider: rustls deprecates it for having no post-quantum
/// key exchange (traffic recorded now could be read by a future quantum
/// computer); we take that for now over aws-lc-rs, which builds a large C
/// library with cmake on every fresh machine.
///
/// AES-128-GCM comes first: block data is encrypted once per pipeline hop,
/// and with AES instructions it costs about a third less CPU than
/// AES-256-GCM for the same 128-bit security against anything but a
/// quantum computer (which the key exchange does not resist either).
fn provider() -> Arc<CryptoProvider> {
    use rustls::crypto::ring::cipher_suite;
    #[allow(deprecated)]
    let mut provider = rustls::crypto::ring::default_provider();
    provider.cipher_suites = vec![
        cipher_suite::TLS13_AES_128_GCM_SHA256,
        cipher_suite::TLS13_AES_256_GCM_SHA384,
        cipher_suite::TLS13_CHACHA20_POLY1305_SHA256,
    ];
    Arc::new(provider)
}

fn tls_error(what: &str, error: rustls::Error) -> Error {
    Error::Invalid(format!("{what}: {error}"))
}

/// The master's side: its certificate and key.
#[derive(Clone)]
pub struct ServerTls {
    config: Arc<ServerConfig>,
}

impl fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ServerTls(..)")
    }
}

impl ServerTls {
    /// A server with `certificate` and its PKCS#8 `key`.
    pub fn new(certificate: CertificateDer<'static>, key: Vec<u8>) -> Result<ServerTls> {
        let mut config = ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| tls_error("TLS server settings", e))?
            .with_no_client_auth()
            .with_single_cert(vec![certificate], PrivateKeyDer::Pkcs8(key.into()))
            .map_err(|e| tls_error("TLS server certificate", e))?;
        config.send_tls13_tickets = 0;
        Ok(ServerTls {
            config: Arc::new(config),
        })
    }

    /// A server with a new key pair and a self-signed certificate.
    #[cfg(feature = "tls-server")]
    pub fn self_signed() -> Result<ServerTls> {
        let made = rcgen::generate_simple_self_signed(vec![SERVER_NAME.to_string()])
            .map_err(|e| Error::Invalid(format!("make a TLS certificate: {e}")))?;
        ServerTls::new(made.cert.der().clone(), made.signing_key.serialize_der())
    }

    /// A new server session, for callers that move the bytes themselves.
    pub fn session(&self) -> Result<ServerConnection> {
        ServerConnection::new(Arc::clone(&self.config))
            .map_err(|e| tls_error("start a TLS session", e))
    }

    /// The server side of TLS on `stream`, handshake done.
    pub fn accept<S: Read + Write>(&self, mut stream: S) -> Result<(Half<S>, Half<S>)> {
        let mut session = ServerConnection::new(Arc::clone(&self.config))
            .map_err(|e| tls_error("start a TLS session", e))?;
        let binding = handshake(&mut session, &mut stream, "a client")?;
        Ok(halves(
            stream,
            Session::Server(Box::new(session)),
            Some(binding),
        ))
    }
}

/// The cluster's data authority: signs the minions' certificates.
#[cfg(feature = "tls-server")]
pub struct DataAuthority {
    issuer: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
}

#[cfg(feature = "tls-server")]
impl DataAuthority {
    /// The authority of the cluster whose key is `key`: the same key for
    /// every member that derives it.
    pub fn derive(key: &crate::auth::ClusterKey) -> Result<DataAuthority> {
        let failed = |e: rcgen::Error| Error::Invalid(format!("the data authority: {e}"));
        let seed = key.derive(DATA_AUTHORITY_LABEL, 0);
        let pkcs8 = rustls::pki_types::PrivatePkcs8KeyDer::from(
            [&ED25519_PKCS8_PREFIX[..], &seed].concat(),
        );
        let signing_key =
            rcgen::KeyPair::from_pkcs8_der_and_sign_algo(&pkcs8, &rcgen::PKCS_ED25519)
                .map_err(failed)?;
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(failed)?;
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "dfs data authority");
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let issuer = rcgen::CertifiedIssuer::self_signed(params, signing_key).map_err(failed)?;
        Ok(DataAuthority { issuer })
    }

    /// The authority's certificate, which clients trust minions by.
    pub fn certificate(&self) -> Vec<u8> {
        self.issuer.der().to_vec()
    }

    /// A minion's TLS server: a new key and a certificate for `dfs-minion`
    /// signed by this authority.
    pub fn minion_server(&self) -> Result<ServerTls> {
        let failed = |e: rcgen::Error| Error::Invalid(format!("a minion certificate: {e}"));
        let key = rcgen::KeyPair::generate().map_err(failed)?;
        let mut params =
            rcgen::CertificateParams::new(vec![MINION_NAME.to_string()]).map_err(failed)?;
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        let certificate = params.signed_by(&key, &self.issuer).map_err(failed)?;
        ServerTls::new(certificate.der().clone(), key.serialize_der())
    }

    /// How a minion checks the minions it connects to.
    pub fn trust(&self) -> Result<DataTrust> {
        DataTrust::new(&self.certificate())
    }
}

/// A client's side of data connections: TLS to minions whose certificate
/// the cluster's data authority signed.
#[derive(Clone)]
pub struct DataTrust {
    config: Arc<ClientConfig>,
}

impl fmt::Debug for DataTrust {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DataTrust(..)")
    }
}

impl DataTrust {
    /// Trust in the minions of the authority whose certificate (DER) is
    /// `authority`, as the master handed it out.
    pub fn new(authority: &[u8]) -> Result<DataTrust> {
        if authority.len() > AUTHORITY_CERTIFICATE_BYTES_MAX {
            return Err(Error::Invalid(format!(
                "a data authority certificate of {} bytes (at most {AUTHORITY_CERTIFICATE_BYTES_MAX})",
                authority.len()
            )));
        }
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from(authority.to_vec()))
            .map_err(|e| tls_error("the data authority certificate", e))?;
        let mut config = ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| tls_error("TLS client settings", e))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.resumption = rustls::client::Resumption::disabled();
        Ok(DataTrust {
            config: Arc::new(config),
        })
    }

    /// A new client session to a minion, for callers that move the bytes
    /// themselves.
    pub fn session(&self) -> Result<ClientConnection> {
        let name = ServerName::try_from(MINION_NAME)
            .map_err(|e| Error::Invalid(format!("TLS server name: {e}")))?;
        ClientConnection::new(Arc::clone(&self.config), name)
            .map_err(|e| tls_error("start a TLS session", e))
    }

    /// The client side of TLS to a minion on `stream`, handshake done (and
    /// the minion's certificate checked).
    pub fn connect<S: Read + Write>(&self, mut stream: S) -> Result<(Half<S>, Half<S>)> {
        let mut session = self.session()?;
        let binding = handshake(&mut session, &mut stream, "a minion")?;
        Ok(halves(
            stream,
            Session::Client(Box::new(session)),
            Some(binding),
        ))
    }
}

/// The client's side, shared by every connection of the process.
fn client_config() -> Result<Arc<ClientConfig>> {
    static CONFIG: OnceLock<Arc<ClientConfig>> = OnceLock::new();
    if let Some(config) = CONFIG.get() {
        return Ok(Arc::clone(config));
    }
    let provider = provider();
    let verifier = Arc::new(ChannelBound {
        provider: Arc::clone(&provider),
    });
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| tls_error("TLS client settings", e))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    config.resumption = rustls::client::Resumption::disabled();
    Ok(Arc::clone(CONFIG.get_or_init(|| Arc::new(config))))
}

/// The client side of TLS on `stream`, handshake done.
pub fn connect<S: Read + Write>(mut stream: S) -> Result<(Half<S>, Half<S>)> {
    let name = ServerName::try_from(SERVER_NAME)
        .map_err(|e| Error::Invalid(format!("TLS server name: {e}")))?;
    let mut session = ClientConnection::new(client_config()?, name)
        .map_err(|e| tls_error("start a TLS session", e))?;
    let binding = handshake(&mut session, &mut stream, "the master")?;
    Ok(halves(
        stream,
        Session::Client(Box::new(session)),
        Some(binding),
    ))
}

/// `stream` as it is, in two halves.
pub fn plain<S>(stream: S) -> (Half<S>, Half<S>) {
    halves(stream, Session::Plain, None)
}

/// Runs the handshake with `peer` on `stream` to its end; the session's
/// channel binding.
fn handshake<D, S: Read + Write>(
    session: &mut rustls::ConnectionCommon<D>,
    stream: &mut S,
    peer: &str,
) -> Result<[u8; BINDING_BYTES]> {
    while session.is_handshaking() {
        session
            .complete_io(stream)
            .map_err(|e| Error::io(format!("TLS handshake with {peer}"), e))?;
    }
    session
        .export_keying_material([0u8; BINDING_BYTES], EXPORTER_LABEL, None)
        .map_err(|e| tls_error("TLS channel binding", e))
}

/// Accepts the master's certificate, whatever it is, once its handshake
/// signature verifies: the key behind it is the session's, and the
/// master's proof over the session's binding says it is the master.
#[derive(Debug)]
struct ChannelBound {
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for ChannelBound {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        certificate: &CertificateDer<'_>,
        signed: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            certificate,
            signed,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        certificate: &CertificateDer<'_>,
        signed: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            certificate,
            signed,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

enum Session {
    Plain,
    Client(Box<ClientConnection>),
    Server(Box<ServerConnection>),
}

struct Shared<S> {
    session: Session,
    stream: S,
}

/// One direction of a connection, plain or TLS; both halves share the
/// stream (each use takes it for the length of one call).
pub struct Half<S> {
    shared: Arc<Mutex<Shared<S>>>,
    binding: Option<[u8; BINDING_BYTES]>,
}

fn halves<S>(
    stream: S,
    session: Session,
    binding: Option<[u8; BINDING_BYTES]>,
) -> (Half<S>, Half<S>) {
    let shared = Arc::new(Mutex::new(Shared { session, stream }));
    let reader = Half {
        shared: Arc::clone(&shared),
        binding,
    };
    (reader, Half { shared, binding })
}

impl<S> Half<S> {
    fn lock(&self) -> MutexGuard<'_, Shared<S>> {
        crate::sync::lock(&self.shared)
    }

    /// The session's channel binding, or `None` on a plain connection.
    pub fn binding(&self) -> Option<[u8; BINDING_BYTES]> {
        self.binding
    }

    /// True when TLS protects the connection.
    pub fn is_tls(&self) -> bool {
        self.binding.is_some()
    }

    /// Runs `f` on the stream below (to set its timeouts, say).
    pub fn with_stream<R>(&self, f: impl FnOnce(&mut S) -> R) -> R {
        f(&mut self.lock().stream)
    }

    /// True when TLS holds no received bytes the reader has not taken.
    pub fn nothing_buffered(&self) -> bool {
        match &self.lock().session {
            Session::Plain => true,
            Session::Client(session) => session.wants_read(),
            Session::Server(session) => session.wants_read(),
        }
    }
}

impl<S: Read + Write> Read for Half<S> {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        let mut shared = self.lock();
        let Shared { session, stream } = &mut *shared;
        match session {
            Session::Plain => stream.read(buffer),
            Session::Client(session) => rustls::Stream::new(&mut **session, stream).read(buffer),
            Session::Server(session) => rustls::Stream::new(&mut **session, stream).read(buffer),
        }
    }
}

impl<S: Read + Write> Write for Half<S> {
    fn write(&mut self, buffer: &[u8]) -> io::Result<usize> {
        let mut shared = self.lock();
        let Shared { session, stream } = &mut *shared;
        match session {
            Session::Plain => stream.write(buffer),
            Session::Client(session) => rustls::Stream::new(&mut **session, stream).write(buffer),
            Session::Server(session) => rustls::Stream::new(&mut **session, stream).write(buffer),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        let mut shared = self.lock();
        let Shared { session, stream } = &mut *shared;
        match session {
            Session::Plain => stream.flush(),
            Session::Client(session) => rustls::Stream::new(&mut **session, stream).flush(),
            Session::Server(session) => rustls::Stream::new(&mut **session, stream).flush(),
        }
    }
}

#[cfg(all(test, feature = "tls-server"))]
mod tests {
    use std::net::{TcpListener, TcpStream};
    use std::thread;

    use super::*;

    fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let client = TcpStream::connect(listener.local_addr().expect("address")).expect("connect");
        let (server, _) = listener.accept().expect("accept");
        (client, server)
    }

    #[test]
    fn both_sides_agree_on_the_binding_and_carry_bytes_both_ways() {
        let (client, server) = pair();
        let tls = ServerTls::self_signed().expect("certificate");
        let served = thread::spawn(move || {
            let (mut reader, mut writer) = tls.accept(server).expect("accept");
            let mut request = [0u8; 5];
            reader.read_exact(&mut request).expect("read");
            writer.write_all(b"world").expect("write");
            writer.flush().expect("flush");
            (request, reader.binding())
        });
        let (mut reader, mut writer) = connect(client).expect("connect");
        writer.write_all(b"hello").expect("write");
        writer.flush().expect("flush");
        let mut answer = [0u8; 5];
        reader.read_exact(&mut answer).expect("read");
        let (request, server_binding) = served.join().expect("server");
        assert_eq!(&request, b"hello");
        assert_eq!(&answer, b"world");
        assert!(reader.is_tls());
        assert_eq!(reader.binding(), server_binding);
        assert_eq!(writer.binding(), server_binding);
    }

    #[test]
    fn a_relay_that_ends_tls_on_each_side_holds_two_bindings() {
        // A meddler accepts the client with a certificate of its own and
        // connects to the server itself.
        let (client, meddler_in) = pair();
        let (meddler_out, server) = pair();
        let served = thread::spawn(move || {
            let tls = ServerTls::self_signed().expect("certificate");
            let (reader, _) = tls.accept(server).expect("accept");
            reader.binding()
        });
        let meddled = thread::spawn(move || {
            let tls = ServerTls::self_signed().expect("certificate");
            let (toward_client, _) = tls.accept(meddler_in).expect("accept");
            let (toward_server, _) = connect(meddler_out).expect("connect");
            (toward_client.binding(), toward_server.binding())
        });
        let (reader, _) = connect(client).expect("connect");
        let (meddler_client_side, meddler_server_side) = meddled.join().expect("meddler");
        let server_binding = served.join().expect("server");
        assert_eq!(reader.binding(), meddler_client_side);
        assert_eq!(server_binding, meddler_server_side);
        assert_ne!(reader.binding(), server_binding);
    }

    /// A minion of `serving` answers a client that trusts `trusted`; what
    /// the client's handshake said.
    fn data_handshake(serving: &DataAuthority, trusted: &[u8]) -> Result<()> {
        let (client, server) = pair();
        let tls = serving.minion_server().expect("minion certificate");
        let served = thread::spawn(move || tls.accept(server).map(|_| ()));
        let outcome = DataTrust::new(trusted)?.connect(client).map(|_| ());
        let _ = served.join();
        outcome
    }

    #[test]
    fn clients_trust_the_minions_of_their_cluster_only() {
        let key = crate::auth::ClusterKey::generate().expect("key");
        // The master and each minion derive the authority on their own.
        let at_master = DataAuthority::derive(&key).expect("authority");
        let at_minion = DataAuthority::derive(&key).expect("authority");
        data_handshake(&at_minion, &at_master.certificate()).expect("a minion of the cluster");
        let other = crate::auth::ClusterKey::generate().expect("key");
        let elsewhere = DataAuthority::derive(&other).expect("authority");
        let refused = data_handshake(&elsewhere, &at_master.certificate())
            .expect_err("a minion of another cluster");
        assert!(
            refused.to_string().contains("TLS handshake with a minion"),
            "{refused}"
        );
        // The master's own certificate is no minion's either.
        let (client, server) = pair();
        let master = ServerTls::self_signed().expect("certificate");
        let served = thread::spawn(move || master.accept(server).map(|_| ()));
        DataTrust::new(&at_master.certificate())
            .expect("trust")
            .connect(client)
            .map(|_| ())
            .expect_err("a self-signed certificate");
        let _ = served.join();
        assert!(DataTrust::new(&[0u8; 40]).is_err(), "not a certificate");
    }

    #[test]
    fn a_plain_stream_has_no_binding() {
        let (client, _server) = pair();
        let (reader, _writer) = plain(client);
        assert!(!reader.is_tls());
        assert_eq!(reader.binding(), None);
        assert!(reader.nothing_buffered());
    }
}
