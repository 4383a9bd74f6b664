//! Skylark's wire protocol.
//!
//! Placeholder: the frame codec, typed commands and error codes land here.
