//! [`Federation`]: two Prosody processes on two loopback addresses that
//! reach each other over s2s without DNS.

use std::net::{IpAddr, Ipv4Addr};

use crate::ca::TestCa;
use crate::error::Error;
use crate::ports::PortLease;
use crate::prosody::S2s;
use crate::server::{Options, Plan, Server};
use crate::Kind;

/// Two private Prosody servers, `example.org` on 127.0.0.2 and
/// `example.com` on 127.0.0.3, each with its own directory, accounts, c2s
/// and s2s ports. Outgoing s2s finds the peer through the static-route
/// plugin (no DNS, no /etc/hosts); both sides authenticate with
/// certificates from one test CA (SASL EXTERNAL, `s2s_secure_auth`), and
/// s2s requires TLS.
#[derive(Debug)]
pub struct Federation {
    servers: [Server; 2],
}

/// One side of a [`Federation`]: its domain and loopback address.
#[derive(Debug, Clone)]
pub struct Side {
    /// The domain this server serves.
    pub domain: String,
    /// Its loopback address (127.x.y.z).
    pub ip: IpAddr,
}

impl Federation {
    /// `example.org` on 127.0.0.2 and `example.com` on 127.0.0.3.
    pub fn start() -> Result<Self, Error> {
        Self::start_with(
            Side {
                domain: "example.org".into(),
                ip: IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)),
            },
            Side {
                domain: "example.com".into(),
                ip: IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3)),
            },
        )
    }

    /// Two Prosody servers for the given sides.
    pub fn start_with(first: Side, second: Side) -> Result<Self, Error> {
        for side in [&first, &second] {
            let mut options = Options::new(Kind::Prosody);
            options.domains = vec![side.domain.clone()];
            options.ip = side.ip;
            crate::server::validate(&options)?;
        }
        if first.ip == second.ip || first.domain == second.domain {
            return Err(Error::InvalidOptions {
                reason: "the two sides need different addresses and domains".into(),
            });
        }
        let ca = TestCa::generate()?;
        let s2s_first = PortLease::acquire(first.ip)?;
        let s2s_second = PortLease::acquire(second.ip)?;
        let plan = |me: &Side, s2s: PortLease, peer: &Side, peer_s2s: u16| -> Result<Plan, Error> {
            let mut options = Options::new(Kind::Prosody);
            options.domains = vec![me.domain.clone()];
            options.ip = me.ip;
            let routes = vec![(peer.domain.clone(), peer.ip, peer_s2s)];
            let config = S2s {
                port: s2s.port(),
                routes,
            };
            Ok(Plan {
                c2s: PortLease::acquire(me.ip)?,
                options,
                s2s: Some((s2s, config)),
            })
        };
        let second_port = s2s_second.port();
        let first_port = s2s_first.port();
        let first_plan = plan(&first, s2s_first, &second, second_port)?;
        let second_plan = plan(&second, s2s_second, &first, first_port)?;
        let a = Server::launch(first_plan, &ca)?;
        let b = Server::launch(second_plan, &ca)?;
        Ok(Self { servers: [a, b] })
    }

    /// Both servers, in the order they were given.
    pub fn servers(&self) -> &[Server; 2] {
        &self.servers
    }

    /// Both servers, mutable (to stop or restart one).
    pub fn servers_mut(&mut self) -> &mut [Server; 2] {
        &mut self.servers
    }

    /// The server that serves `domain`.
    pub fn server(&self, domain: &str) -> Result<&Server, Error> {
        let index = self.index_of(domain)?;
        Ok(&self.servers[index])
    }

    /// The server that serves `domain`, mutable (to stop or restart it).
    pub fn server_mut(&mut self, domain: &str) -> Result<&mut Server, Error> {
        let index = self.index_of(domain)?;
        Ok(&mut self.servers[index])
    }

    fn index_of(&self, domain: &str) -> Result<usize, Error> {
        self.servers
            .iter()
            .position(|s| s.domains().iter().any(|d| d == domain))
            .ok_or_else(|| Error::UnknownDomain {
                domain: domain.to_owned(),
                served: self
                    .servers
                    .iter()
                    .flat_map(|s| s.domains().to_vec())
                    .collect(),
            })
    }
}
