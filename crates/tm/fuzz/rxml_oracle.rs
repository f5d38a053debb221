//! The oracle the reader is checked against: whether rxml, the strict XMPP
//! parser, reads the whole input as one well-formed document. Shared by the
//! fuzz checks (`checks.rs`) and the reader's differential tests
//! (`src/xml.rs`).

use rxml::{Parse as _, Parser};

/// Whether rxml reads all of `input` as one well-formed document (minidom
/// alone stops at the end of the root element).
pub fn accepts(input: &str) -> bool {
    let mut parser = Parser::new();
    let mut buf = input.as_bytes();
    loop {
        match parser.parse(&mut buf, true) {
            Ok(Some(_)) => {}
            Ok(None) => return true,
            Err(_) => return false,
        }
    }
}
