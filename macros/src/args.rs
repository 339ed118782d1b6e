//! The private structs that carry each method's arguments on the wire: a
//! map of argument name to value (`{"a": 1, "b": 2}` in JSON).

use crate::parse::{Method, Service};
use proc_macro2::{Ident, TokenStream};
use quote::{format_ident, quote};
use syn::ext::IdentExt;

/// The name of `method`'s arguments struct: `__WarrenArgs_Calculator_add`.
pub(crate) fn ident(service: &Service, method: &Method) -> Ident {
    format_ident!(
        "__WarrenArgs_{}_{}",
        service.item.ident.unraw(),
        method.ident.unraw()
    )
}

/// `__WarrenArgs_Calculator_add { a, b }`: a value (client side) or a
/// pattern (server side) binding each argument to its own name.
pub(crate) fn construct(service: &Service, method: &Method) -> TokenStream {
    let name = ident(service, method);
    let fields = method.args.iter().map(|(arg, _)| arg);
    quote!(#name { #(#fields),* })
}

/// One struct per method. Fields are the arguments, in order, named as
/// declared; a method with no arguments gets an empty struct (`{}`).
pub(crate) fn generate(service: &Service) -> TokenStream {
    service
        .methods
        .iter()
        .map(|method| {
            let name = ident(service, method);
            let fields = method.args.iter().map(|(arg, ty)| quote!(#arg: #ty));
            quote! {
                #[doc(hidden)]
                // The name is internal and spells the trait and method names;
                // the client or the server alone may leave it half used.
                #[allow(non_camel_case_types, dead_code)]
                #[derive(
                    ::warren::codegen::serde::Serialize,
                    ::warren::codegen::serde::Deserialize,
                )]
                #[serde(crate = "::warren::codegen::serde")]
                struct #name { #(#fields),* }
            }
        })
        .collect()
}
