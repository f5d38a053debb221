//! Reading untrusted XML into a `minidom` tree, bounded in size, depth and
//! node count: a streaming pass checks all three first, so building (and
//! dropping) the tree never recurses deeper than [`MAX_DEPTH`] and never
//! allocates more than a small multiple of the input.
//!
//! A `minidom` node costs far more memory than its text: `<a/>` is 4 bytes of
//! input but an element of a few hundred bytes in memory. Bounding only the
//! size let 2 MiB of `<a/>` take 190 MB. [`parse_bounded`] therefore also
//! bounds the number of nodes (elements, attributes, namespace declarations
//! and text runs) to [`node_budget`]`(len)`: [`MIN_NODES`] plus one node per
//! [`BYTES_PER_NODE`] bytes of input, so the tree stays within a small
//! multiple of the input (`tests/memory.rs` measures it).

use minidom::Element;
use rxml::{Parse as _, RawEvent, RawParser};

/// Deepest element nesting accepted.
pub const MAX_DEPTH: usize = 64;

/// Nodes always allowed, whatever the input's size (an SCE envelope's own
/// elements and affixes fit many times over).
pub const MIN_NODES: usize = 64;

/// Bytes of input per node allowed beyond [`MIN_NODES`]. Real content spends
/// more than this per node (a trust message's `<trust>KEY</trust>` is about 30
/// bytes per node, pretty-printed with indentation about 20), while each node
/// costs `minidom` about 100–250 bytes, so this keeps the tree within about
/// 16 times the input.
pub const BYTES_PER_NODE: usize = 16;

/// The number of nodes [`parse_bounded`] accepts in `len` bytes of input.
#[must_use]
pub const fn node_budget(len: usize) -> usize {
    MIN_NODES + len / BYTES_PER_NODE
}

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
    /// More nodes than [`node_budget`] allows for its size.
    #[error("XML has more than {limit} nodes (elements, attributes, texts) for its size, at byte {offset}")]
    TooManyNodes {
        /// Where the node over the limit starts.
        offset: usize,
        /// The limit for this input ([`node_budget`]).
        limit: usize,
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

/// Parses `text` into an element if it is well-formed, at most `limit` bytes,
/// at most [`MAX_DEPTH`] deep and has at most [`node_budget`]`(text.len())`
/// nodes.
///
/// # Errors
/// [`XmlError`] saying which bound was exceeded, or where the XML is malformed.
pub fn parse_bounded(text: &str, limit: usize) -> Result<Element, XmlError> {
    if text.len() > limit {
        return Err(XmlError::TooLarge {
            size: text.len(),
            limit,
        });
    }
    check_shape(text)?;
    text.parse::<Element>().map_err(|e| XmlError::Malformed {
        offset: 0,
        message: e.to_string(),
    })
}

/// The streaming pass: depth and node count, without building anything.
fn check_shape(text: &str) -> Result<(), XmlError> {
    let budget = node_budget(text.len());
    let mut parser = RawParser::new();
    let mut buf = text.as_bytes();
    let mut depth = 0usize;
    let mut nodes = 0usize;
    let mut in_text = false;
    loop {
        let offset = text.len() - buf.len();
        let event = match parser.parse(&mut buf, true) {
            Ok(Some(event)) => event,
            Ok(None) => return Ok(()),
            Err(e) => {
                let message = match e {
                    rxml::error::EndOrError::Error(e) => e.to_string(),
                    rxml::error::EndOrError::NeedMoreData => "unexpected end of input".into(),
                };
                return Err(XmlError::Malformed { offset, message });
            }
        };
        let was_text = std::mem::replace(&mut in_text, matches!(event, RawEvent::Text(..)));
        let counted = match event {
            RawEvent::ElementHeadOpen(..) => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(XmlError::TooDeep { offset });
                }
                true
            }
            RawEvent::ElementFoot(..) => {
                depth = depth.saturating_sub(1);
                false
            }
            // Namespace declarations are attributes here: minidom keeps them too.
            RawEvent::Attribute(..) => true,
            // A text run may arrive in several events; it is one node.
            RawEvent::Text(..) => !was_text,
            _ => false,
        };
        if counted {
            nodes += 1;
            if nodes > budget {
                return Err(XmlError::TooManyNodes {
                    offset,
                    limit: budget,
                });
            }
        }
    }
}
