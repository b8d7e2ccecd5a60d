//! Storage conformance suite (written next).
