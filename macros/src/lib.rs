//! Procedural macros for warren: `#[warren::service]` and
//! `#[derive(warren::Event)]`.
//!
//! Use them through the `warren` crate, which documents them and provides
//! everything the generated code names (`warren::codegen`).
#![forbid(unsafe_code)]

mod args;
mod attrs;
mod call;
mod client;
mod errors;
mod event;
mod gather;
mod names;
mod parse;
mod server;
mod trait_def;
mod types;

use proc_macro::TokenStream;

/// Derives a typed client and a server adapter from a trait: documented
/// as `warren::service`, where it is meant to be used from.
#[proc_macro_attribute]
pub fn service(args: TokenStream, item: TokenStream) -> TokenStream {
    expand(args.into(), item.into()).into()
}

/// Gives an event type its name and schema version: documented as
/// `warren::Event`, where it is meant to be used from.
#[proc_macro_derive(Event, attributes(event))]
pub fn event(item: TokenStream) -> TokenStream {
    event::derive(item.into()).into()
}

fn expand(
    args: proc_macro2::TokenStream,
    item: proc_macro2::TokenStream,
) -> proc_macro2::TokenStream {
    match parse::Service::parse(args, item) {
        Ok(service) => {
            let mut out = trait_def::generate(&service);
            out.extend(args::generate(&service));
            out.extend(client::generate(&service));
            out.extend(gather::generate(&service));
            out.extend(server::generate(&service));
            out
        }
        Err(errors) => errors.to_compile_error(),
    }
}
