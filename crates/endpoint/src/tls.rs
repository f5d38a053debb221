//! [`PemRootsConnector`]: STARTTLS that verifies the server's certificate
//! against the CA certificates the caller names (PEM), and only those, for
//! a private server or a test CA (`atm account init --ca FILE`).
//!
//! tokio-xmpp 6 verifies TLS against the system roots and has no hook for
//! another verifier, so this implements its public [`ServerConnector`]:
//! TCP to the target, stream header, `<starttls/>`, then a rustls handshake
//! with a [`RootCertStore`] that holds exactly the given CAs, checking the
//! certificate against the JID's domain; then the stream is restarted and
//! handed to tokio-xmpp, which does SASL and binding as usual. Channel
//! binding data (`tls-exporter`, TLS 1.3) is computed as tokio-xmpp's own
//! STARTTLS connector does, when turned on.
//!
//! Accounts on public servers use [`crate::system_roots_connector`] instead.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use tokio::io::BufStream;
use tokio::net::TcpStream;
use tokio_rustls::rustls::pki_types::{pem::PemObject, CertificateDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, ProtocolVersion, RootCertStore};
use tokio_rustls::TlsConnector;
use tokio_xmpp::connect::{ServerConnector, ServerConnectorError};
use tokio_xmpp::parsers::jid::Jid;
use tokio_xmpp::parsers::starttls;
use tokio_xmpp::xmlstream::{
    initiate_stream, FallibleStreamElement, PendingFeaturesRecv, ReadError, StreamHeader, Timeouts,
    XmppStream, XmppStreamElement,
};

/// The stream type [`PemRootsConnector`] produces.
pub type TlsStream = BufStream<tokio_rustls::client::TlsStream<TcpStream>>;

/// Where a [`PemRootsConnector`] connects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A fixed address (no DNS).
    Addr(SocketAddr),
    /// A host name and port, resolved (A/AAAA, no SRV) at each connection.
    Host(String, u16),
}

impl Target {
    /// Parses `HOST:PORT`, `IP:PORT` or `[IPV6]:PORT`.
    ///
    /// # Errors
    /// [`CaError::Target`] naming the text.
    pub fn parse(text: &str) -> Result<Target, CaError> {
        if let Ok(addr) = text.parse::<SocketAddr>() {
            return Ok(Target::Addr(addr));
        }
        let bad = |reason: &str| CaError::Target {
            text: text.to_owned(),
            reason: reason.to_owned(),
        };
        let (host, port) = text
            .rsplit_once(':')
            .ok_or_else(|| bad("expected HOST:PORT"))?;
        let port: u16 = port
            .parse()
            .map_err(|_| bad("the port is not a number from 0 to 65535"))?;
        if host.is_empty() || host.contains(['[', ']', '/', ' ']) {
            return Err(bad("invalid host name"));
        }
        Ok(Target::Host(host.to_owned(), port))
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Addr(addr) => write!(f, "{addr}"),
            Target::Host(host, port) => write!(f, "{host}:{port}"),
        }
    }
}

/// Why a [`PemRootsConnector`] could not be built, or a server address not
/// understood.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    /// The PEM holds no usable CA certificate.
    #[error("CA certificates: {reason}")]
    Ca {
        /// What was wrong.
        reason: String,
    },
    /// A server address that is not `HOST:PORT`.
    #[error("server address {text:?}: {reason}")]
    Target {
        /// The text given.
        text: String,
        /// Why.
        reason: String,
    },
}

/// Errors of the connection itself, wrapped by tokio-xmpp into
/// `tokio_xmpp::Error::Connection`.
#[derive(Debug, thiserror::Error)]
pub enum TlsConnectError {
    /// The host name does not resolve.
    #[error("unknown host {host}: {source}")]
    UnknownHost {
        /// The host.
        host: String,
        /// The resolver's error.
        #[source]
        source: std::io::Error,
    },
    /// TCP connect failed.
    #[error("TCP connect to {addr}: {source}")]
    Tcp {
        /// The address.
        addr: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The TLS handshake failed (for example the certificate does not chain
    /// to the given CA, or does not name the domain).
    #[error("TLS handshake with {domain} at {addr} (trusting only the given CA): {source}")]
    Tls {
        /// The domain the certificate was checked for.
        domain: String,
        /// The address.
        addr: String,
        /// rustls's error, as an I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The domain is not a valid TLS server name.
    #[error("{domain} is not a valid TLS server name")]
    ServerName {
        /// The domain.
        domain: String,
    },
    /// The server does not offer STARTTLS.
    #[error("{addr} does not offer STARTTLS")]
    NoStartTls {
        /// The address.
        addr: String,
    },
    /// The connection (TCP, STARTTLS, TLS, stream restart) took too long.
    #[error("connecting to {addr} timed out after {after:?}")]
    TimedOut {
        /// The address.
        addr: String,
        /// The time-out.
        after: Duration,
    },
}

impl ServerConnectorError for TlsConnectError {}

/// Connects to one target with STARTTLS, trusting only the given CAs.
///
/// By default it offers no channel binding, so SASL uses `SCRAM-*` (or
/// `PLAIN` inside TLS) without `-PLUS`: ejabberd 23.01 offers
/// `SCRAM-*-PLUS` on TLS 1.3 but rejects the `tls-exporter` binding that
/// tokio-xmpp sends there ("Invalid channel binding") and advertises no
/// XEP-0440 types, so a client cannot tell in advance.
/// [`PemRootsConnector::with_channel_binding`] turns it on.
#[derive(Clone)]
pub struct PemRootsConnector {
    target: Target,
    tls: Arc<ClientConfig>,
    timeout: Duration,
    channel_binding: bool,
}

impl std::fmt::Debug for PemRootsConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PemRootsConnector")
            .field("target", &self.target)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl PemRootsConnector {
    /// A connector to `target` whose TLS trusts exactly the certificates in
    /// `ca_pem` (PEM, one or more `CERTIFICATE` blocks).
    ///
    /// # Errors
    /// [`CaError::Ca`]: no certificate, unreadable PEM, unusable certificate.
    pub fn new(target: Target, ca_pem: &[u8]) -> Result<Self, CaError> {
        let mut roots = RootCertStore::empty();
        let mut count = 0;
        for cert in CertificateDer::pem_slice_iter(ca_pem) {
            let cert = cert.map_err(|e| CaError::Ca {
                reason: format!("unreadable PEM: {e}"),
            })?;
            roots.add(cert).map_err(|e| CaError::Ca {
                reason: format!("not a usable CA certificate: {e}"),
            })?;
            count += 1;
        }
        if count == 0 {
            return Err(CaError::Ca {
                reason: "no CERTIFICATE block in the PEM".into(),
            });
        }
        let provider = Arc::new(tokio_rustls::rustls::crypto::aws_lc_rs::default_provider());
        let tls = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| CaError::Ca {
                reason: format!("TLS configuration: {e}"),
            })?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Self {
            target,
            tls: Arc::new(tls),
            timeout: Duration::from_secs(10),
            channel_binding: false,
        })
    }

    /// Sets the time-out for one whole connection attempt (resolving, TCP,
    /// STARTTLS, TLS handshake, stream restart). Default 10 s.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Offers `tls-exporter` channel binding on TLS 1.3, as tokio-xmpp's own
    /// connector does. Off by default: see the type's documentation.
    pub fn with_channel_binding(mut self, on: bool) -> Self {
        self.channel_binding = on;
        self
    }

    /// Where this connector connects.
    pub fn target(&self) -> &Target {
        &self.target
    }

    async fn tcp(&self) -> Result<TcpStream, TlsConnectError> {
        match &self.target {
            Target::Addr(addr) => {
                TcpStream::connect(addr)
                    .await
                    .map_err(|source| TlsConnectError::Tcp {
                        addr: addr.to_string(),
                        source,
                    })
            }
            Target::Host(host, port) => {
                let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), *port))
                    .await
                    .map_err(|source| TlsConnectError::UnknownHost {
                        host: host.clone(),
                        source,
                    })?
                    .collect();
                let mut last = None;
                for addr in &addrs {
                    match TcpStream::connect(addr).await {
                        Ok(tcp) => return Ok(tcp),
                        Err(e) => last = Some(e),
                    }
                }
                Err(TlsConnectError::Tcp {
                    addr: self.target.to_string(),
                    source: last.unwrap_or_else(|| {
                        std::io::Error::new(std::io::ErrorKind::NotFound, "no address")
                    }),
                })
            }
        }
    }

    async fn connect_unbounded(
        &self,
        domain: &str,
        ns: &'static str,
        timeouts: Timeouts,
    ) -> Result<(PendingFeaturesRecv<TlsStream>, sasl::common::ChannelBinding), tokio_xmpp::Error>
    {
        let addr = self.target.to_string();
        let tcp = self.tcp().await?;
        let header = || StreamHeader {
            to: Some(Cow::Owned(domain.to_owned())),
            from: None,
            id: None,
        };
        let plain = initiate_stream(BufStream::new(tcp), ns, header(), timeouts).await?;
        let (features, mut plain) = plain.recv_features::<FallibleStreamElement>().await?;
        if !features.can_starttls() {
            return Err(TlsConnectError::NoStartTls { addr }.into());
        }
        plain
            .send(&XmppStreamElement::Starttls(starttls::Nonza::Request(
                starttls::Request,
            )))
            .await?;
        wait_for_proceed(&mut plain).await?;
        let tcp = plain.into_inner().into_inner();
        let server_name =
            ServerName::try_from(domain.to_owned()).map_err(|_| TlsConnectError::ServerName {
                domain: domain.to_owned(),
            })?;
        let tls = TlsConnector::from(self.tls.clone())
            .connect(server_name, tcp)
            .await
            .map_err(|source| TlsConnectError::Tls {
                domain: domain.to_owned(),
                addr,
                source,
            })?;
        let channel_binding = if self.channel_binding {
            channel_binding(&tls)
        } else {
            sasl::common::ChannelBinding::None
        };
        let stream = initiate_stream(BufStream::new(tls), ns, header(), timeouts).await?;
        Ok((stream, channel_binding))
    }
}

async fn wait_for_proceed<S>(stream: &mut XmppStream<S>) -> Result<(), tokio_xmpp::Error>
where
    S: tokio::io::AsyncBufRead + tokio::io::AsyncWrite + Unpin,
{
    loop {
        match stream
            .next()
            .await
            .map(|v| v.and_then(|e| e.into_read_error()))
        {
            Some(Ok(XmppStreamElement::Starttls(starttls::Nonza::Proceed(_)))) => return Ok(()),
            Some(Ok(_)) | Some(Err(ReadError::SoftTimeout)) => {}
            Some(Err(ReadError::HardError(e))) => return Err(e.into()),
            Some(Err(ReadError::ParseError(e))) => {
                return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, e).into())
            }
            None | Some(Err(ReadError::StreamFooterReceived)) => {
                return Err(tokio_xmpp::Error::Disconnected)
            }
        }
    }
}

/// `tls-exporter` channel binding on TLS 1.3 (RFC 9266), none otherwise.
fn channel_binding(
    tls: &tokio_rustls::client::TlsStream<TcpStream>,
) -> sasl::common::ChannelBinding {
    let (_, connection) = tls.get_ref();
    if connection.protocol_version() != Some(ProtocolVersion::TLSv1_3) {
        return sasl::common::ChannelBinding::None;
    }
    match connection.export_keying_material(vec![0u8; 32], b"EXPORTER-Channel-Binding", None) {
        Ok(data) => sasl::common::ChannelBinding::TlsExporter(data),
        Err(_) => sasl::common::ChannelBinding::None,
    }
}

impl ServerConnector for PemRootsConnector {
    type Stream = TlsStream;

    async fn connect(
        &self,
        jid: &Jid,
        ns: &'static str,
        timeouts: Timeouts,
    ) -> Result<
        (
            PendingFeaturesRecv<Self::Stream>,
            sasl::common::ChannelBinding,
        ),
        tokio_xmpp::Error,
    > {
        let domain = jid.domain().as_str().to_owned();
        match tokio::time::timeout(self.timeout, self.connect_unbounded(&domain, ns, timeouts))
            .await
        {
            Ok(result) => result,
            Err(_) => Err(TlsConnectError::TimedOut {
                addr: self.target.to_string(),
                after: self.timeout,
            }
            .into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_or_name_the_problem() {
        assert_eq!(
            Target::parse("127.0.0.1:5222").ok(),
            Some(Target::Addr(SocketAddr::from(([127, 0, 0, 1], 5222))))
        );
        assert_eq!(
            Target::parse("xmpp.example.org:5223").ok(),
            Some(Target::Host("xmpp.example.org".into(), 5223))
        );
        assert!(Target::parse("[::1]:5222").is_ok());
        for bad in [
            "example.org",
            "example.org:",
            "example.org:99999",
            ":5222",
            "a b:1",
        ] {
            assert!(
                matches!(Target::parse(bad), Err(CaError::Target { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_pem_without_certificates_is_refused() {
        let target = Target::Addr(SocketAddr::from(([127, 0, 0, 1], 1)));
        assert!(matches!(
            PemRootsConnector::new(target.clone(), b"not a pem"),
            Err(CaError::Ca { .. })
        ));
        assert!(matches!(
            PemRootsConnector::new(
                target,
                b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
            ),
            Err(CaError::Ca { .. })
        ));
    }
}
