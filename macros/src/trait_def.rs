//! The trait itself, rewritten so that implementors still write `async fn`
//! while the futures the server runs are `Send`.

use crate::parse::Service;
use proc_macro2::TokenStream;
use quote::quote;
use syn::{parse_quote, ReturnType, TraitItem};

/// `async fn add(&self, a: i64) -> i64;` becomes
/// `fn add(&self, a: i64) -> impl Future<Output = i64> + Send;`, and the
/// trait gains the supertraits `Send + Sync + 'static` (a server shares one
/// instance between concurrent calls, on any thread).
pub(crate) fn generate(service: &Service) -> TokenStream {
    let mut item = service.item.clone();
    if item.colon_token.is_none() {
        item.colon_token = Some(Default::default());
    }
    item.supertraits.push(parse_quote!(::warren::codegen::Send));
    item.supertraits.push(parse_quote!(::warren::codegen::Sync));
    item.supertraits.push(parse_quote!('static));
    for trait_item in &mut item.items {
        let TraitItem::Fn(f) = trait_item else {
            continue;
        };
        let ret = match &f.sig.output {
            ReturnType::Default => quote!(()),
            ReturnType::Type(_, ty) => quote!(#ty),
        };
        f.sig.asyncness = None;
        f.sig.output = parse_quote! {
            -> impl ::warren::codegen::Future<Output = #ret> + ::warren::codegen::Send
        };
        if let Some(body) = f.default.take() {
            // A provided method keeps its body, run as the returned future.
            // Clippy would suggest `async fn`, which cannot promise `Send`.
            f.attrs
                .push(parse_quote!(#[allow(clippy::manual_async_fn)]));
            f.default = Some(parse_quote!({ async move #body }));
        }
    }
    quote!(#item)
}
