//! `atm --dir DIR run`: stay online, process, log every decision in plain
//! words, and serve the other commands over `DIR/run.sock` (one JSON line
//! in, one JSON line out), as the only writer of the directory's state
//! (it holds `DIR/run.lock` while it runs).

use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context as _, Result};
use atm_client::Event;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::sync::{mpsc, oneshot};

use super::config::Config;
use super::{connect, open_core, perform, runtime, try_lock, words, Request, SOCKET_FILE};

/// Test hook (fault tests only): `ATM_TEST_STOP_BEFORE_ENCRYPTED=N` makes
/// `atm run` stop for good just before it hands the N-th stanza that
/// carries an OMEMO 2 message (`<encrypted xmlns='urn:xmpp:omemo:2'>`
/// anywhere inside: direct, carbon, offline or archived) to the core,
/// printing `test hook: holding encrypted stanza N` on stderr, so that a
/// test can kill it between receiving and processing a stanza. Unset, it
/// does nothing.
pub const STOP_BEFORE_ENCRYPTED_ENV: &str = "ATM_TEST_STOP_BEFORE_ENCRYPTED";

fn carries_omemo(element: &minidom::Element) -> bool {
    element.is("encrypted", atm_client::ns::NS_OMEMO) || element.children().any(carries_omemo)
}

type Job = (Request, oneshot::Sender<Result<Value, String>>);

fn say(json_out: bool, text: &str, value: &Value) {
    let mut out = std::io::stdout().lock();
    let _ = if json_out {
        writeln!(out, "{value}")
    } else {
        writeln!(out, "{text}")
    };
    let _ = out.flush();
}

async fn serve(listener: tokio::net::UnixListener, jobs: mpsc::Sender<Job>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let jobs = jobs.clone();
        tokio::spawn(async move {
            let (read, mut write) = stream.into_split();
            let mut line = String::new();
            // One request line of at most 1 MiB.
            let mut reader = BufReader::new(tokio::io::AsyncReadExt::take(read, 1 << 20));
            let answer =
                match tokio::time::timeout(Duration::from_secs(10), reader.read_line(&mut line))
                    .await
                {
                    Ok(Ok(_)) => {
                        let request = serde_json::from_str::<Value>(&line)
                            .map_err(|e| anyhow!("request is not JSON: {e}"))
                            .and_then(|v| Request::from_json(&v));
                        match request {
                            Err(e) => json!({"error": e.to_string()}),
                            Ok(request) => {
                                let (tx, rx) = oneshot::channel();
                                if jobs.send((request, tx)).await.is_err() {
                                    json!({"error": "`atm run` is stopping"})
                                } else {
                                    match rx.await {
                                        Ok(Ok(value)) => json!({"ok": value}),
                                        Ok(Err(e)) => json!({"error": e}),
                                        Err(_) => json!({"error": "`atm run` stopped"}),
                                    }
                                }
                            }
                        }
                    }
                    _ => return,
                };
            let mut text = answer.to_string();
            text.push('\n');
            let _ = write.write_all(text.as_bytes()).await;
        });
    }
}

/// `atm --dir DIR run [--json]`.
pub fn run(dir: &Path, json_out: bool) -> Result<()> {
    let config = Config::load(dir)?;
    let _lock = try_lock(dir)?.ok_or_else(|| {
        anyhow!(
            "another atm process is using {} (an `atm run` or a command); only one may",
            dir.display()
        )
    })?;
    let stop_before: Option<u64> = match std::env::var(STOP_BEFORE_ENCRYPTED_ENV) {
        Ok(text) => Some(
            text.parse()
                .map_err(|_| anyhow!("{STOP_BEFORE_ENCRYPTED_ENV}={text:?} is not a number"))?,
        ),
        Err(_) => None,
    };
    let core = open_core(dir, &config)?;
    let socket = dir.join(SOCKET_FILE);
    // We hold the lock: a socket file left there is stale.
    let _ = std::fs::remove_file(&socket);
    let result = runtime()?.block_on(async {
        let listener = tokio::net::UnixListener::bind(&socket)
            .with_context(|| format!("listening on {}", socket.display()))?;
        std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("{}", socket.display()))?;
        let stopping = Arc::new(AtomicBool::new(false));
        {
            let stopping = stopping.clone();
            tokio::spawn(async move {
                let mut term =
                    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    {
                        Ok(term) => term,
                        Err(_) => return,
                    };
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
                stopping.store(true, Ordering::SeqCst);
            });
        }
        let mut driver = connect(dir, &config, core).await?;
        if let Some(n) = stop_before {
            let mut seen = 0u64;
            driver.set_before_stanza(Some(Box::new(move |_, stanza| {
                if carries_omemo(stanza) {
                    seen += 1;
                    if seen == n {
                        eprintln!("test hook: holding encrypted stanza {seen}");
                        loop {
                            std::thread::sleep(Duration::from_secs(3600));
                        }
                    }
                }
            })));
        }
        let (jobs_tx, mut jobs) = mpsc::channel::<Job>(16);
        tokio::spawn(serve(listener, jobs_tx));
        let me = driver.core().jid().clone();
        let (device_id, fingerprint) = (driver.core().device_id(), driver.core().fingerprint());
        say(
            json_out,
            &format!(
                "online as {} (device {device_id}, fingerprint {}); Ctrl-C stops",
                driver.bound_jid(),
                words::grouped(&fingerprint)
            ),
            &json!({"event": "online", "jid": me.as_str(), "bound": driver.bound_jid().to_string(),
                    "device_id": device_id, "fingerprint": fingerprint}),
        );
        let mut show = move |event: Event| {
            let (text, value) = words::event(&event);
            say(json_out, &text, &value);
        };
        // Shown as soon as the stanza that caused it is committed.
        driver.set_event_sink(Some(Box::new(show)));
        let outcome = async {
            while !stopping.load(Ordering::SeqCst) {
                driver.step(Duration::from_millis(100)).await?;
                while let Some(event) = driver.poll_event() {
                    show(event);
                }
                while let Ok((request, reply)) = jobs.try_recv() {
                    let result = perform(&mut driver, &request, &mut show)
                        .await
                        .map_err(|e| format!("{e:#}"));
                    let _ = reply.send(result);
                }
            }
            Ok::<(), anyhow::Error>(())
        }
        .await;
        driver.close().await;
        outcome
    });
    let _ = std::fs::remove_file(&socket);
    if result.is_ok() {
        say(json_out, "stopped", &json!({"event": "stopped"}));
    }
    result
}
