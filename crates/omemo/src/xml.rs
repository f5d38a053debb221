//! Reading untrusted XML into a `minidom` tree, bounded: size and depth are
//! checked by a streaming pass first, so building (and dropping) the tree
//! never recurses deeper than [`MAX_DEPTH`].

use minidom::Element;
use rxml::{Event, Parse as _, Parser};

/// Deepest element nesting accepted.
pub const MAX_DEPTH: usize = 64;

/// Why XML text was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum XmlError {
    /// Larger than the limit.
    #[error("XML of {size} bytes is larger than the limit of {limit} bytes")]
    TooLarge {
        /// Its size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// Nested deeper than [`MAX_DEPTH`].
    #[error("XML nested deeper than {MAX_DEPTH} elements, at byte {offset}")]
    TooDeep {
        /// Where.
        offset: usize,
    },
    /// Not well-formed.
    #[error("malformed XML at byte {offset}: {message}")]
    Malformed {
        /// Where.
        offset: usize,
        /// What the parser said.
        message: String,
    },
}

/// Parses `text` into an element if it is well-formed, at most `limit` bytes
/// and at most [`MAX_DEPTH`] deep.
pub fn parse_bounded(text: &str, limit: usize) -> Result<Element, XmlError> {
    if text.len() > limit {
        return Err(XmlError::TooLarge {
            size: text.len(),
            limit,
        });
    }
    let mut parser = Parser::new();
    let mut buf = text.as_bytes();
    let mut depth = 0usize;
    loop {
        let offset = text.len() - buf.len();
        match parser.parse(&mut buf, true) {
            Ok(Some(Event::StartElement(..))) => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(XmlError::TooDeep { offset });
                }
            }
            Ok(Some(Event::EndElement(..))) => depth = depth.saturating_sub(1),
            Ok(Some(_)) => {}
            Ok(None) => break,
            Err(e) => {
                let message = match e {
                    rxml::error::EndOrError::Error(e) => e.to_string(),
                    rxml::error::EndOrError::NeedMoreData => "unexpected end of input".into(),
                };
                return Err(XmlError::Malformed { offset, message });
            }
        }
    }
    text.parse::<Element>().map_err(|e| XmlError::Malformed {
        offset: 0,
        message: e.to_string(),
    })
}
