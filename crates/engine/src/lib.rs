//! The Automatic Trust Management engine (XEP-0450), sans-IO.
