//! `atm` as a live endpoint: the README's walkthrough on a private Prosody
//! (with and without a running `atm run`), a contact's device, chat, the
//! JSON outputs, the QR round trip through a PNG, and every error case.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use std::time::Duration;

use common::{atm, d, level, until, uri_of, Prosody, Running};

const ALICE: &str = "alice@example.org";
const BOB: &str = "bob@example.org";

/// The README's "Use it on your own devices", one-shot commands only: init
/// two devices, `uri` on one and `scan` (of its PNG QR code) on the other,
/// then the other way round; both end authenticated.
#[test]
fn newcomer_walkthrough_without_run() {
    let p = Prosody::start(&["alice"]);
    let laptop = p.init("laptop", ALICE);
    let phone = p.init("phone", ALICE);
    let (laptop_uri, laptop_fp) = uri_of(&laptop);
    let (_, phone_fp) = uri_of(&phone);
    // Before any scan: the own other device is only automatically trusted.
    let png = p.dir("laptop-qr.png");
    atm(&["--dir", &d(&laptop), "uri", "--png", &d(&png)]).ok("uri --png");
    let shown = atm(&["--dir", &d(&laptop), "uri"]);
    shown.ok("uri");
    assert!(shown.stdout.contains(&laptop_uri), "{}", shown.stdout);
    assert!(
        shown.stdout.contains('█'),
        "no QR code in the terminal: {}",
        shown.stdout
    );
    // Without a terminal, scan refuses to decide unasked.
    atm(&["--dir", &d(&phone), "scan", &laptop_uri]).fails("scan without --yes", "--yes");
    // The phone scans the laptop's QR code from the PNG.
    atm(&["--dir", &d(&phone), "scan", "--image", &d(&png), "--yes"]).ok("scan --image");
    assert_eq!(
        level(&phone, ALICE, &laptop_fp).as_deref(),
        Some("authenticated")
    );
    // The laptop scans the phone's URI.
    let (phone_uri, _) = uri_of(&phone);
    atm(&["--dir", &d(&laptop), "scan", &phone_uri, "--yes"]).ok("scan URI");
    assert_eq!(
        level(&laptop, ALICE, &phone_fp).as_deref(),
        Some("authenticated")
    );
    assert_eq!(
        level(&phone, ALICE, &laptop_fp).as_deref(),
        Some("authenticated")
    );
    // keys --json content.
    let keys = atm(&["--dir", &d(&laptop), "keys", "--json"])
        .ok("keys")
        .json();
    let entry = keys["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["fingerprint"] == phone_fp.as_str())
        .unwrap()
        .clone();
    assert_eq!(entry["owner"], ALICE);
    assert!(entry["since"].is_string(), "{entry}");
    assert!(
        entry["why"].as_str().unwrap().contains("decision"),
        "{entry}"
    );
    assert_eq!(entry["device_ids"].as_array().unwrap().len(), 1, "{entry}");
    // status --json content.
    let status = atm(&["--dir", &d(&laptop), "status", "--json"])
        .ok("status")
        .json();
    assert_eq!(status["jid"], ALICE);
    assert_eq!(status["fingerprint"], laptop_fp.as_str());
    assert_eq!(status["policy"], "toakafa");
    assert_eq!(status["keys_by_level"]["authenticated"], 1, "{status}");
    assert_eq!(status["outbox"], 0, "everything acknowledged: {status}");
}

/// The same with `atm run` active on the laptop: the commands go through
/// its socket, and it logs the new device and the decisions.
#[test]
fn newcomer_walkthrough_with_run() {
    let p = Prosody::start(&["alice"]);
    let laptop = p.init("laptop", ALICE);
    let running = Running::start(&laptop, &p.dir("laptop-run"), &[]);
    let phone = p.init("phone", ALICE);
    let (_, laptop_fp) = uri_of(&laptop);
    let (phone_uri, phone_fp) = uri_of(&phone);
    // The running laptop sees the phone's device at once.
    until(
        "the laptop logs the phone's device",
        Duration::from_secs(60),
        || running.output().contains("new device"),
    );
    // A second `run` on the same directory is refused.
    atm(&["--dir", &d(&laptop), "run"]).fails("second run", "another atm process");
    let (laptop_uri, _) = uri_of(&laptop);
    atm(&["--dir", &d(&phone), "scan", &laptop_uri, "--yes"]).ok("phone scans");
    atm(&["--dir", &d(&laptop), "scan", &phone_uri, "--yes"]).ok("laptop scans (through run)");
    assert_eq!(
        level(&laptop, ALICE, &phone_fp).as_deref(),
        Some("authenticated")
    );
    until(
        "the phone authenticated the laptop",
        Duration::from_secs(60),
        || level(&phone, ALICE, &laptop_fp).as_deref() == Some("authenticated"),
    );
    let log = running.stop();
    assert!(
        log.contains("-> authenticated, because of your decision"),
        "{log}"
    );
    assert!(!laptop.join("run.sock").exists(), "socket left behind");
}

/// A contact's device: Bob's phone and Alice's laptop scan each other,
/// Bob sends, Alice's running laptop shows the text (and never shows a
/// trust message as chat); a new device of Bob is reported at once.
#[test]
fn contact_device_send_and_run() {
    let p = Prosody::start(&["alice", "bob"]);
    let laptop = p.init("laptop", ALICE);
    let bob_phone = p.init("bob-phone", BOB);
    let (laptop_uri, laptop_fp) = uri_of(&laptop);
    let (bob_uri, bob_fp) = uri_of(&bob_phone);
    atm(&["--dir", &d(&laptop), "scan", &bob_uri, "--yes"]).ok("alice scans bob");
    atm(&["--dir", &d(&bob_phone), "scan", &laptop_uri, "--yes"]).ok("bob scans alice");
    assert_eq!(
        level(&laptop, BOB, &bob_fp).as_deref(),
        Some("authenticated")
    );
    assert_eq!(
        level(&bob_phone, ALICE, &laptop_fp).as_deref(),
        Some("authenticated")
    );
    let status = atm(&["--dir", &d(&laptop), "status", "--json"])
        .ok("status")
        .json();
    assert_eq!(status["contacts"], serde_json::json!([BOB]), "{status}");

    let running = Running::start(&laptop, &p.dir("laptop-run"), &[]);
    let sent = atm(&[
        "--dir",
        &d(&bob_phone),
        "send",
        ALICE,
        "hello from bob's phone",
        "--json",
    ]);
    assert_eq!(sent.ok("send").json()["devices"], 1);
    until(
        "alice's run shows the chat",
        Duration::from_secs(60),
        || running.output().contains("hello from bob's phone"),
    );
    // Bob gets a new device: Alice's laptop says so at once, and that it is
    // not used until someone authenticates it (Bob has an authenticated key).
    let bob_tablet = p.init("bob-tablet", BOB);
    let (_, tablet_fp) = uri_of(&bob_tablet);
    until(
        "alice's run reports bob's new device",
        Duration::from_secs(60),
        || {
            running
                .output()
                .contains("not used until someone authenticates it")
        },
    );
    // Alice answers through her running laptop (the socket).
    atm(&["--dir", &d(&laptop), "send", BOB, "hi bob"]).ok("send through run");
    let log = running.stop();
    assert_eq!(
        log.matches("message from").count(),
        1,
        "only the chat is shown as chat:\n{log}"
    );
    assert!(log.contains(&format!("of {BOB}")), "{log}");
    assert_eq!(
        level(&laptop, BOB, &tablet_fp).as_deref(),
        Some("automatically_distrusted")
    );
    // Who decided: Bob's phone, by a trust message, for his tablet if the
    // laptop learned of it; the laptop's own user for Bob's phone.
    let keys = atm(&["--dir", &d(&laptop), "keys", "--json"])
        .ok("keys")
        .json();
    let phone_entry = keys["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["fingerprint"] == bob_fp.as_str())
        .unwrap()
        .clone();
    assert_eq!(phone_entry["decided_by"]["you"], true, "{phone_entry}");
    // Distrust asks first; --yes decides.
    atm(&["--dir", &d(&laptop), "distrust", BOB, &bob_fp]).fails("distrust unasked", "--yes");
    atm(&["--dir", &d(&laptop), "distrust", BOB, &bob_fp, "--yes"]).ok("distrust");
    assert_eq!(
        level(&laptop, BOB, &bob_fp).as_deref(),
        Some("manually_distrusted")
    );
    // Never encrypted for a distrusted key: nothing left to write to.
    atm(&["--dir", &d(&laptop), "send", BOB, "secret"])
        .fails("send to distrusted", "no trusted device");
}

/// Every wrong input: a clear error, a non-zero exit, no panic, nothing
/// half-written.
#[test]
fn errors_are_clear_and_leave_nothing_behind() {
    let p = Prosody::start(&["alice"]);
    let ca = p.ca();
    let pw = p.password_file();
    let addr = p.addr();
    let leftovers = |name: &str| {
        let dir = p.dir(name);
        assert!(!dir.exists(), "{name} left behind");
        let siblings: Vec<_> = std::fs::read_dir(p.work.path())
            .unwrap()
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(name))
            .collect();
        assert!(siblings.is_empty(), "left behind: {siblings:?}");
    };
    let init = |name: &str, extra: &[&str]| {
        let dir = d(&p.dir(name));
        let mut args = vec![
            "--dir",
            dir.as_str(),
            "account",
            "init",
            "--password-file",
            pw.as_str(),
        ];
        args.extend_from_slice(extra);
        atm(&args)
    };
    // Wrong password.
    let wrong = p.work.path().join("wrong");
    std::fs::write(&wrong, "not the password\n").unwrap();
    let wrong_s = d(&wrong);
    atm(&[
        "--dir",
        &d(&p.dir("a")),
        "account",
        "init",
        "--jid",
        ALICE,
        "--password-file",
        &wrong_s,
        "--server",
        &addr,
        "--ca",
        &ca,
    ])
    .fails("wrong password", "refused");
    leftovers("a");
    // Unknown account (the server refuses).
    init(
        "b",
        &[
            "--jid",
            "nobody@example.org",
            "--server",
            &addr,
            "--ca",
            &ca,
        ],
    )
    .fails("unknown account", "refused");
    leftovers("b");
    // Unknown host.
    init(
        "c",
        &[
            "--jid",
            ALICE,
            "--server",
            "no-such-host.invalid:5222",
            "--ca",
            &ca,
        ],
    )
    .fails("unknown host", "unknown host");
    leftovers("c");
    // TLS failure: another CA.
    let other = atm_xmpp_server::TestCa::generate().unwrap();
    let other_ca = p.work.path().join("other-ca.pem");
    std::fs::write(&other_ca, other.pem()).unwrap();
    init(
        "e",
        &["--jid", ALICE, "--server", &addr, "--ca", &d(&other_ca)],
    )
    .fails("TLS", "TLS handshake");
    leftovers("e");
    // Nothing listening there.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_addr = closed.local_addr().unwrap().to_string();
    drop(closed);
    init(
        "f",
        &["--jid", ALICE, "--server", &closed_addr, "--ca", &ca],
    )
    .fails("refused connection", "TCP connect");
    leftovers("f");
    // Plaintext only to loopback, and only when asked.
    init(
        "g",
        &[
            "--jid",
            ALICE,
            "--server",
            "192.0.2.1:5222",
            "--insecure-plaintext-loopback",
        ],
    )
    .fails("plaintext", "not a loopback address");
    leftovers("g");
    // Bad inputs.
    init("h", &["--jid", "not a jid", "--server", &addr]).fails("bad JID", "invalid JID");
    init("h", &["--jid", "example.org", "--server", &addr]).fails("domain JID", "local part");
    init("h", &["--jid", ALICE, "--server", "example.org"]).fails("bad server", "HOST:PORT");
    let empty_ca = p.work.path().join("empty.pem");
    std::fs::write(&empty_ca, "nothing\n").unwrap();
    init(
        "h",
        &["--jid", ALICE, "--server", &addr, "--ca", &d(&empty_ca)],
    )
    .fails("bad CA", "CERTIFICATE");
    leftovers("h");

    // A good device, then its files' modes.
    let dev = p.init("dev", ALICE);
    for file in ["account.json", "password", "ca.pem"] {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(dev.join(file))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "{file}");
    }
    // Init on a non-empty directory refuses and changes nothing.
    let before = std::fs::read(dev.join("account.json")).unwrap();
    atm(&[
        "--dir",
        &d(&dev),
        "account",
        "init",
        "--jid",
        ALICE,
        "--password-file",
        &pw,
        "--server",
        &addr,
        "--ca",
        &ca,
    ])
    .fails("init twice", "not empty");
    assert_eq!(std::fs::read(dev.join("account.json")).unwrap(), before);
    let dev_s = d(&dev);
    // Unknown key, malformed fingerprint, own key.
    let unknown = "ab".repeat(32);
    atm(&["--dir", &dev_s, "authenticate", ALICE, &unknown]).fails("unknown key", "no key");
    atm(&["--dir", &dev_s, "authenticate", ALICE, "xyz"])
        .fails("bad fingerprint", "malformed fingerprint");
    let (own_uri, own_fp) = uri_of(&dev);
    atm(&["--dir", &dev_s, "authenticate", ALICE, &own_fp]).fails("own key", "own key");
    // Malformed URI, a URI of another encryption.
    atm(&[
        "--dir",
        &dev_s,
        "scan",
        "xmpp:alice@example.org?message",
        "--yes",
    ])
    .fails("malformed URI", "malformed Trust Message URI");
    let other_encryption = own_uri.replace("urn:xmpp:omemo:2", "urn:xmpp:otr:0");
    atm(&["--dir", &dev_s, "scan", &other_encryption, "--yes"])
        .fails("other encryption", "urn:xmpp:otr:0");
    // An image without a QR code; not an image.
    let blank = p.work.path().join("blank.png");
    std::fs::write(&blank, png_blank()).unwrap();
    atm(&["--dir", &dev_s, "scan", "--image", &d(&blank), "--yes"])
        .fails("blank image", "no QR code");
    atm(&["--dir", &dev_s, "scan", "--image", &pw, "--yes"])
        .fails("not an image", "neither a PNG nor a JPEG");
    // No --dir, a directory that is not a device.
    atm(&["keys"]).fails("no dir", "--dir");
    atm(&["--dir", &d(&p.dir("nothing")), "keys"]).fails("missing dir", "does not exist");
    std::fs::create_dir(p.dir("plain")).unwrap();
    atm(&["--dir", &d(&p.dir("plain")), "status"]).fails("not a device", "account init");
    // The uri tools still work without --dir.
    atm(&["uri", "parse", &own_uri, "--json"]).ok("uri parse");
    atm(&["uri"]).fails("uri without dir", "--dir");

    // A garbled config, an unknown field, a newer format: refused, untouched.
    let config = dev.join("account.json");
    let good = std::fs::read_to_string(&config).unwrap();
    for (text, needle) in [
        ("{ not json".to_owned(), "garbled"),
        (
            good.replace("\"format\"", "\"colour\": 1, \"format\""),
            "unknown field",
        ),
        (good.replace("\"format\": 1", "\"format\": 2"), "newer atm"),
    ] {
        std::fs::write(&config, &text).unwrap();
        atm(&["--dir", &dev_s, "keys"]).fails("bad config", needle);
        assert_eq!(std::fs::read_to_string(&config).unwrap(), text);
    }
    std::fs::write(&config, &good).unwrap();
    // A database of a newer format.
    {
        let db = rusqlite::Connection::open(dev.join("atm.sqlite")).unwrap();
        db.execute_batch("PRAGMA user_version = 9999;").unwrap();
    }
    atm(&["--dir", &dev_s, "status"]).fails("newer database", "newer");
    atm(&["--dir", &dev_s, "send", ALICE, "x"]).fails("newer database (send)", "newer");
}

fn png_blank() -> Vec<u8> {
    let mut bytes = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut bytes, 64, 64);
        encoder.set_color(png::ColorType::Grayscale);
        let mut writer = encoder.write_header().unwrap();
        writer.write_image_data(&[255u8; 64 * 64]).unwrap();
    }
    bytes
}
