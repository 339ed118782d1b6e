//! A crate that denies warnings and missing docs still compiles, even when
//! it uses none of the generated types.
#![deny(warnings, missing_docs, missing_debug_implementations, unreachable_pub)]

/// A documented service.
#[warren::service]
pub trait Quiet {
    /// Does nothing.
    async fn nothing(&self);
    /// Takes many arguments.
    async fn many(&self, a: u8, b: u8, c: u8, d: u8, e: u8, f: u8, g: u8, h: u8) -> u8;
}

/// A service with no methods yet.
#[warren::service]
pub trait Empty {}

mod private {
    #[warren::service]
    trait Hidden {
        async fn hidden(&self) -> u8;
    }
}

fn main() {}
