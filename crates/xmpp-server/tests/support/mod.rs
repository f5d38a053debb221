//! Small client helpers for the harness's own tests: every wait is bounded.

#![allow(dead_code)]
// Test helpers: failing loudly is their job.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use atm_xmpp_server::client_tls::{self, TestCaConnector};
use atm_xmpp_server::Server;
use futures::StreamExt;
use tokio_xmpp::parsers::iq::Iq;
use tokio_xmpp::parsers::jid::{BareJid, FullJid, Jid};
use tokio_xmpp::parsers::message::{Lang, Message};
use tokio_xmpp::parsers::minidom::Element;
use tokio_xmpp::parsers::presence::Presence;
use tokio_xmpp::stanzastream::{Event, StanzaStage, StanzaState, StanzaStream, StreamEvent};
use tokio_xmpp::{IqRequest, IqResponse, Stanza};

/// Time-out for one step on loopback (s2s included).
pub const STEP: Duration = Duration::from_secs(20);

pub const PASSWORD: &str = "correct horse";

pub fn jid(local: &str, domain: &str) -> BareJid {
    client_tls::bare_jid(local, domain).unwrap()
}

/// Starts a server from async code (start blocks).
pub async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}

/// A logged-in client that has sent initial presence.
pub struct Online {
    pub stream: StanzaStream,
    pub jid: FullJid,
    /// Stanzas received while waiting for something else, oldest first.
    backlog: VecDeque<Stanza>,
}

pub async fn online(connector: &TestCaConnector, bare: &BareJid) -> Online {
    let (stream, jid) = client_tls::connect(connector, Jid::from(bare.clone()), PASSWORD, STEP)
        .await
        .unwrap_or_else(|e| panic!("{bare} could not log in: {e}"));
    let mut online = Online {
        stream,
        jid,
        backlog: VecDeque::new(),
    };
    let mut presence = Presence::available();
    presence.id = Some(next_id());
    online.send(presence.into()).await;
    // The server handles one session's stanzas in order: once this ping is
    // answered, the presence is in effect (else a message to the bare JID
    // could still go to offline storage).
    online
        .iq_ok(
            None,
            IqRequest::Get(element("<ping xmlns='urn:xmpp:ping'/>")),
        )
        .await;
    online
}

pub async fn online_at(server: &Server, bare: &BareJid) -> Online {
    online(&server.connector().unwrap(), bare).await
}

fn next_id() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    format!("atm-test-{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

impl Online {
    /// Sends a stanza and waits (bounded) until it is written.
    pub async fn send(&mut self, stanza: Stanza) {
        let mut token = self.stream.send(Box::new(stanza)).await;
        let state = tokio::time::timeout(STEP, token.wait_for(StanzaStage::Sent))
            .await
            .unwrap_or_else(|_| panic!("{}: stanza not sent within {STEP:?}", self.jid));
        assert!(
            matches!(
                state,
                Some(StanzaState::Sent { .. } | StanzaState::Acked { .. })
            ),
            "{}: stanza not sent: {state:?}",
            self.jid
        );
    }

    pub async fn send_chat(&mut self, to: &BareJid, body: &str) {
        let mut message =
            Message::chat(Some(Jid::from(to.clone()))).with_body(Lang::new(), body.to_owned());
        message.id = Some(tokio_xmpp::parsers::message::Id(next_id()));
        self.send(message.into()).await;
    }

    /// Sends an IQ and waits (bounded) for the answer in the event stream.
    pub async fn iq(&mut self, to: Option<&BareJid>, request: IqRequest) -> IqResponse {
        self.iq_watching(to, request, |_| {}).await
    }

    /// Like [`Self::iq`], showing every other stanza received meanwhile to
    /// `watch` (MAM results arrive before the IQ result).
    pub async fn iq_watching(
        &mut self,
        to: Option<&BareJid>,
        request: IqRequest,
        mut watch: impl FnMut(&Stanza),
    ) -> IqResponse {
        let id = next_id();
        let to = to.map(|j| Jid::from(j.clone()));
        let iq = match request {
            IqRequest::Get(payload) => Iq::Get {
                from: None,
                to,
                id: id.clone(),
                payload,
            },
            IqRequest::Set(payload) => Iq::Set {
                from: None,
                to,
                id: id.clone(),
                payload,
            },
        };
        self.send(Stanza::Iq(iq)).await;
        self.wait_for(&format!("the answer to IQ {id}"), |stanza| match stanza {
            Stanza::Iq(Iq::Result {
                id: got, payload, ..
            }) if *got == id => Some(IqResponse::Result(payload.clone())),
            Stanza::Iq(Iq::Error { id: got, error, .. }) if *got == id => {
                Some(IqResponse::Error(error.clone()))
            }
            other => {
                watch(other);
                None
            }
        })
        .await
    }

    pub async fn iq_ok(&mut self, to: Option<&BareJid>, request: IqRequest) -> Option<Element> {
        match self.iq(to, request).await {
            IqResponse::Result(payload) => payload,
            IqResponse::Error(error) => panic!("IQ refused: {error:?}"),
        }
    }

    /// Waits (bounded) for the first stanza that `pick` accepts.
    /// Stanzas that `pick` refuses are kept for later waits.
    pub async fn wait_for<T>(
        &mut self,
        what: &str,
        mut pick: impl FnMut(&Stanza) -> Option<T>,
    ) -> T {
        for index in 0..self.backlog.len() {
            if let Some(found) = pick(&self.backlog[index]) {
                self.backlog.remove(index);
                return found;
            }
        }
        let deadline = Instant::now() + STEP;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.stream.next()).await {
                Err(_) => panic!("{}: timed out after {STEP:?} waiting for {what}", self.jid),
                Ok(None) => panic!("{}: stream ended waiting for {what}", self.jid),
                Ok(Some(Event::Stream(StreamEvent::Suspended))) => {
                    panic!("{}: connection lost waiting for {what}", self.jid)
                }
                Ok(Some(Event::Stanza(stanza))) => match pick(&stanza) {
                    Some(found) => return found,
                    None => self.backlog.push_back(stanza),
                },
                Ok(Some(Event::Stream(_))) => {}
            }
        }
    }

    /// Waits for a chat message with `body` from `from` (bare).
    pub async fn expect_chat(&mut self, from: &BareJid, body: &str) {
        let what = format!("a message {body:?} from {from}");
        self.wait_for(&what, |stanza| match stanza {
            Stanza::Message(m)
                if m.from.as_ref().map(|f| f.to_bare()) == Some(from.clone())
                    && m.get_best_body(vec![]).map(|(_, b)| b.as_str()) == Some(body) =>
            {
                Some(())
            }
            _ => None,
        })
        .await
    }

    pub async fn end(self) {
        tokio::time::timeout(STEP, self.stream.close())
            .await
            .expect("closing the stream timed out");
    }
}

/// The stanza as XML text.
pub fn xml(stanza: &Stanza) -> String {
    String::from(&Element::from(stanza))
}

pub fn element(text: &str) -> Element {
    text.parse()
        .unwrap_or_else(|e| panic!("bad test XML {text}: {e}"))
}

/// The stream features a server offers before TLS (raw TCP, bounded).
pub fn features_before_tls(addr: std::net::SocketAddr, domain: &str) -> String {
    use std::io::{Read, Write};
    let mut tcp = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        tcp,
        "<?xml version='1.0'?><stream:stream to='{domain}' version='1.0' xmlns='jabber:client' \
         xmlns:stream='http://etherx.jabber.org/streams'>"
    )
    .unwrap();
    let mut text = String::new();
    let mut buffer = [0u8; 4096];
    while !text.contains("</stream:features>") && text.len() < 65_536 {
        let read = tcp
            .read(&mut buffer)
            .expect("no stream features within 5 s");
        assert!(read > 0, "stream closed before its features: {text}");
        text.push_str(&String::from_utf8_lossy(&buffer[..read]));
    }
    text
}
