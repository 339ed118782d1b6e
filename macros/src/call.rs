//! What the client and the gather types share: each method's parameters,
//! the request it sends and how its reply is decoded.

use crate::args;
use crate::parse::{Method, Output, Service};
use proc_macro2::{Ident, TokenStream};
use quote::{format_ident, quote};
use syn::ext::IdentExt;

/// `CalculatorClient`, `CalculatorGather`, `CalculatorServer`: the trait's
/// name and a suffix, pointing at the trait for "go to definition".
pub(crate) fn type_ident(service: &Service, suffix: &str) -> Ident {
    let trait_ident = &service.item.ident;
    format_ident!("{}{suffix}", trait_ident.unraw(), span = trait_ident.span())
}

/// `a: i64, b: i64`
pub(crate) fn params(method: &Method) -> TokenStream {
    let params = method.args.iter().map(|(arg, ty)| quote!(#arg: #ty));
    quote!(#(#params),*)
}

/// The request for one call, built from `self.options` and the arguments.
pub(crate) fn request(service: &Service, method: &Method) -> TokenStream {
    let wire = &method.wire;
    let idempotent = method.idempotent;
    let oneway = matches!(method.output, Output::Oneway);
    let args = args::construct(service, method);
    quote!(self.options.request(#wire, #idempotent, #oneway, &#args))
}

/// The function that decodes one reply into the method's declared type.
pub(crate) fn decoder(method: &Method) -> TokenStream {
    let ret = &method.ret;
    match &method.output {
        Output::Value => quote!(::warren::codegen::decode::<#ret>),
        Output::Fallible { ok, err } => quote!(::warren::codegen::decode_fallible::<#ok, #err>),
        Output::Oneway => quote!(::warren::codegen::decode_unit),
    }
}

/// The method's own docs, then one line on what goes over the wire.
pub(crate) fn docs(method: &Method, how: &str) -> TokenStream {
    let own = &method.docs;
    let separator = (!own.is_empty()).then(|| quote!(#[doc = ""]));
    let wire = match method.output {
        Output::Oneway => format!(
            "{how} `{}`. A oneway call has no result value and waits for no \
             reply: it returns once the transport delivered it (over AMQP: \
             persistent and confirmed by the broker).",
            method.wire
        ),
        _ => format!("{how} `{}`.", method.wire),
    };
    quote! {
        #(#own)*
        #separator
        #[doc = #wire]
    }
}

/// The `SERVICE` and `METHODS` constants.
pub(crate) fn consts(service: &Service) -> TokenStream {
    let name = &service.name;
    let wires = service.methods.iter().map(|m| &m.wire);
    quote! {
        /// The service type: where calls go by default (any one instance of it).
        pub const SERVICE: &'static str = #name;
        /// The method names on the wire, in declaration order.
        pub const METHODS: &'static [&'static str] = &[#(#wires),*];
    }
}
