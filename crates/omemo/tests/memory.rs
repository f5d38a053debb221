//! Issue 10, item 7: reading an envelope takes memory within a small
//! multiple of its size, whatever its shape. Measured with a counting global
//! allocator (peak bytes live), in a test binary of its own: one test, so no
//! other thread allocates meanwhile.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use atm_omemo::sce::{Envelope, StanzaKind, MAX_ENVELOPE_BYTES};
use atm_omemo::xml::{node_budget, parse_bounded};
use jid::BareJid;
use peak_alloc::PeakAlloc;

#[global_allocator]
static ALLOCATOR: PeakAlloc = PeakAlloc;

/// The bound asserted: peak memory while reading, over the input's size
/// (measured at 0.6–16×, the most for a flat list of empty elements, whose
/// list of children doubles its capacity as it grows; 2 MiB of `<a/>` took
/// 190 MB before the node budget, about 90×).
const MAX_AMPLIFICATION: usize = 20;
/// Fixed costs (parser buffers, the error) allowed on top.
const OVERHEAD: usize = 64 * 1024;

/// An envelope of exactly `size` bytes whose content repeats `unit` as often
/// as `units` says, padded with `<rpad>` text.
fn envelope(unit: &str, units: usize, size: usize) -> String {
    let head = "<envelope xmlns='urn:xmpp:sce:1'><content><x xmlns='urn:example'>";
    let middle = "</x></content><rpad>";
    let tail = "</rpad></envelope>";
    let body = unit.repeat(units);
    let fill = size.saturating_sub(head.len() + body.len() + middle.len() + tail.len());
    format!("{head}{body}{middle}{}{tail}", "p".repeat(fill))
}

/// Peak bytes allocated while `read` runs (what it keeps and what it drops).
fn peak_while(read: impl FnOnce()) -> usize {
    let before = ALLOCATOR.current_usage();
    ALLOCATOR.reset_peak_usage();
    read();
    ALLOCATOR.peak_usage().saturating_sub(before)
}

#[test]
fn reading_an_envelope_stays_within_a_small_multiple_of_its_size() {
    let sender = BareJid::new("a@b").unwrap();
    let recipient = BareJid::new("c@d").unwrap();
    let size = MAX_ENVELOPE_BYTES;
    // As many nodes of each cheap shape as the budget allows for the size.
    let nodes = node_budget(size) - 16;
    let attributes: String = (0..nodes).map(|i| format!(" a{i:x}=''")).collect();
    let prefixes: String = (0..nodes).map(|i| format!(" xmlns:p{i:x}='u'")).collect();
    let shapes: Vec<(&str, String)> = vec![
        ("empty elements", envelope("<a/>", nodes, size)),
        ("elements and text", envelope("<a/>t", nodes / 2, size)),
        (
            "nested elements",
            envelope(
                &format!("{}{}", "<a>".repeat(60), "</a>".repeat(60)),
                nodes / 120,
                size,
            ),
        ),
        ("element pairs", envelope("<a><a/></a>", nodes / 3, size)),
        ("texts in elements", envelope("<a>t</a>", nodes / 3, size)),
        (
            "attributes",
            envelope(&format!("<a{attributes}/>"), 1, size),
        ),
        (
            "namespace declarations",
            envelope(&format!("<a{prefixes}/>"), 1, size),
        ),
        (
            "long names",
            envelope(
                &format!("<{0}/>", "n".repeat(200)),
                (size - 200) / 203,
                size,
            ),
        ),
        ("text", envelope("&amp;", (size - 200) / 5, size)),
    ];
    let mut report = Vec::new();
    for (shape, xml) in &shapes {
        assert!(xml.len() <= size, "{shape}: {} bytes", xml.len());
        let mut accepted = false;
        let peak = peak_while(|| {
            accepted =
                Envelope::open(xml.as_bytes(), &sender, &recipient, StanzaKind::Chat).is_ok();
        });
        assert!(accepted, "{shape}: an envelope within the limits is read");
        report.push(format!(
            "{shape}: {} bytes, peak {peak} bytes ({:.1}x)",
            xml.len(),
            peak as f64 / xml.len() as f64
        ));
        assert!(
            peak <= MAX_AMPLIFICATION * xml.len() + OVERHEAD,
            "{shape}: {peak} bytes for {} bytes of input",
            xml.len()
        );
    }
    // Over the node budget: refused by the streaming pass, before any tree.
    let flood = envelope("<a/>", node_budget(size), size);
    let peak = peak_while(|| assert!(parse_bounded(&flood, size).is_err()));
    report.push(format!("flood refused: peak {peak} bytes"));
    assert!(peak <= OVERHEAD, "a refused flood took {peak} bytes");
    // The review's case: 2 MiB of `<a/>` (190 MB before) is refused outright.
    let review = envelope("<a/>", (2 << 20) / 4, 2 << 20);
    let peak = peak_while(|| {
        assert!(Envelope::open(review.as_bytes(), &sender, &recipient, StanzaKind::Chat).is_err())
    });
    assert!(peak <= OVERHEAD, "2 MiB of <a/> took {peak} bytes");
    println!("{}", report.join("\n"));
}
