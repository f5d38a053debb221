//! Reading untrusted XML into a `minidom` tree, bounded in size, depth and
//! node count: a streaming pass checks all three first, so building (and
//! dropping) the tree never recurses deeper than [`MAX_DEPTH`] and never
//! allocates more than a small multiple of the input.
//!
//! A `minidom` node costs far more memory than its text: `<a/>` is 4 bytes of
//! input but an element of a few hundred bytes in memory. Bounding only the
//! size let 2 MiB of `<a/>` take 190 MB. [`parse_bounded`] therefore also
//! bounds the number of nodes to [`node_budget`]`(len)`: [`MIN_NODES`] plus
//! one node per [`BYTES_PER_NODE`] bytes of input. Counted as nodes: each
//! element, attribute, namespace declaration and text run, and once more
//! each element that has children (its list of children is an allocation
//! of its own). The tree then stays within about 16 times the input
//! (`tests/memory.rs` measures the worst shapes).

use minidom::Element;
use rxml::{Parse as _, RawEvent, RawParser};

/// Deepest element nesting accepted.
pub const MAX_DEPTH: usize = 64;

/// Nodes always allowed, whatever the input's size (an SCE envelope's own
/// elements and affixes fit many times over).
pub const MIN_NODES: usize = 64;

/// Bytes of input per node allowed beyond [`MIN_NODES`]. Each node costs
/// `minidom` at most about 290 bytes (measured, with the growth of a list of
/// children), so this keeps the tree within about 16 times the input; real content spends more input than this
/// per node (a trust message's `<trust>KEY</trust>`, three nodes, is about
/// 20 bytes per node).
pub const BYTES_PER_NODE: usize = 18;

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
    // For each open element, whether it has a child yet (at most MAX_DEPTH).
    let mut has_child: Vec<bool> = Vec::new();
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
                let first_child = has_child
                    .last_mut()
                    .is_some_and(|had| !std::mem::replace(had, true));
                has_child.push(false);
                1 + usize::from(first_child)
            }
            RawEvent::ElementFoot(..) => {
                depth = depth.saturating_sub(1);
                has_child.pop();
                0
            }
            // Namespace declarations are attributes here: minidom keeps them too.
            RawEvent::Attribute(..) => 1,
            // A text run may arrive in several events; it is one node.
            RawEvent::Text(..) if !was_text => {
                let first_child = has_child
                    .last_mut()
                    .is_some_and(|had| !std::mem::replace(had, true));
                1 + usize::from(first_child)
            }
            _ => 0,
        };
        if counted > 0 {
            nodes += counted;
            if nodes > budget {
                return Err(XmlError::TooManyNodes {
                    offset,
                    limit: budget,
                });
            }
        }
    }
}
