//! [`PlaintextLoopbackConnector`]: XMPP without TLS, for a server on the
//! same machine only (a developer's local server). The driver never picks it
//! by itself: a caller constructs it on an explicit request (the CLI's flag),
//! and construction refuses any address that is not loopback.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::BufStream;
use tokio::net::TcpStream;
use tokio_xmpp::connect::{ServerConnector, ServerConnectorError};
use tokio_xmpp::parsers::jid::Jid;
use tokio_xmpp::xmlstream::{initiate_stream, PendingFeaturesRecv, StreamHeader, Timeouts};

/// Why a plaintext connection was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum PlaintextError {
    /// The address is not a loopback address: plaintext is never used
    /// across a network.
    #[error("{addr} is not a loopback address: plaintext XMPP is refused")]
    NotLoopback {
        /// The address.
        addr: SocketAddr,
    },
    /// TCP connect failed.
    #[error("TCP connect to {addr}: {source}")]
    Tcp {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The connection took too long.
    #[error("connecting to {addr} timed out after {after:?}")]
    TimedOut {
        /// The address.
        addr: SocketAddr,
        /// The limit.
        after: Duration,
    },
}

impl ServerConnectorError for PlaintextError {}

/// Connects without TLS to a loopback address.
#[derive(Debug, Clone)]
pub struct PlaintextLoopbackConnector {
    addr: SocketAddr,
    timeout: Duration,
}

impl PlaintextLoopbackConnector {
    /// A connector to `addr`, which must be loopback.
    ///
    /// # Errors
    /// [`PlaintextError::NotLoopback`].
    pub fn new(addr: SocketAddr) -> Result<Self, PlaintextError> {
        if !addr.ip().is_loopback() {
            return Err(PlaintextError::NotLoopback { addr });
        }
        Ok(PlaintextLoopbackConnector {
            addr,
            timeout: Duration::from_secs(10),
        })
    }
}

impl ServerConnector for PlaintextLoopbackConnector {
    type Stream = BufStream<TcpStream>;

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
        let addr = self.addr;
        let attempt = async {
            let tcp = TcpStream::connect(addr)
                .await
                .map_err(|source| PlaintextError::Tcp { addr, source })?;
            let header = StreamHeader {
                to: Some(Cow::Owned(jid.domain().as_str().to_owned())),
                from: None,
                id: None,
            };
            let pending = initiate_stream(BufStream::new(tcp), ns, header, timeouts).await?;
            Ok((pending, sasl::common::ChannelBinding::None))
        };
        match tokio::time::timeout(self.timeout, attempt).await {
            Ok(result) => result,
            Err(_) => Err(PlaintextError::TimedOut {
                addr,
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
    fn only_loopback_addresses_are_accepted() {
        for addr in ["127.0.0.1:5222", "[::1]:5222", "127.0.0.3:1"] {
            let addr: SocketAddr = addr.parse().unwrap_or_else(|e| panic!("{addr}: {e}"));
            assert!(PlaintextLoopbackConnector::new(addr).is_ok(), "{addr}");
        }
        for addr in ["192.0.2.1:5222", "[2001:db8::1]:5222", "0.0.0.0:5222"] {
            let addr: SocketAddr = addr.parse().unwrap_or_else(|e| panic!("{addr}: {e}"));
            assert!(
                matches!(
                    PlaintextLoopbackConnector::new(addr),
                    Err(PlaintextError::NotLoopback { .. })
                ),
                "{addr}"
            );
        }
    }
}
