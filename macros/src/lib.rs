//! Procedural macros for warren (see the `warren` crate).
