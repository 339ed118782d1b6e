//! The macro's options: `#[warren::service(name = "...")]` on the trait and
//! `#[warren(rename = "...", idempotent, oneway)]` on its methods.

use crate::errors::Errors;
use proc_macro2::TokenStream;
use syn::meta::ParseNestedMeta;
use syn::parse::Parser;
use syn::{Attribute, LitStr};

/// Options of the service as a whole.
#[derive(Default)]
pub(crate) struct ServiceOptions {
    /// `name = "calc"`: the service type, instead of the snake-cased trait name.
    pub(crate) name: Option<LitStr>,
}

impl ServiceOptions {
    /// Reads the arguments of `#[warren::service(...)]`.
    pub(crate) fn parse(args: TokenStream, errors: &mut Errors) -> Self {
        let mut options = Self::default();
        let parser = syn::meta::parser(|meta| {
            if meta.path.is_ident("name") {
                set(&meta, &mut options.name)
            } else {
                Err(meta.error(
                    "unknown option of #[warren::service]; expected `name = \"...\"` \
                     (the service type)",
                ))
            }
        });
        if let Err(e) = parser.parse2(args) {
            errors.push(e);
        }
        options
    }
}

/// Options of one method.
#[derive(Default)]
pub(crate) struct MethodOptions {
    /// `rename = "Calculator.sum"`: the full method name on the wire.
    pub(crate) rename: Option<LitStr>,
    /// `idempotent`: running the call twice is harmless.
    pub(crate) idempotent: bool,
    /// `oneway`: no result value.
    pub(crate) oneway: bool,
}

impl MethodOptions {
    /// Takes the `#[warren(...)]` attributes out of `attrs`, leaving the
    /// others (docs, lints) in place.
    pub(crate) fn take(attrs: &mut Vec<Attribute>, errors: &mut Errors) -> Self {
        let mut options = Self::default();
        attrs.retain(|attr| {
            if !attr.path().is_ident("warren") {
                return true;
            }
            let parsed = attr.parse_nested_meta(|meta| {
                if meta.path.is_ident("rename") {
                    set(&meta, &mut options.rename)
                } else if meta.path.is_ident("idempotent") {
                    flag(&meta, &mut options.idempotent)
                } else if meta.path.is_ident("oneway") {
                    flag(&meta, &mut options.oneway)
                } else {
                    Err(meta.error(
                        "unknown warren attribute; expected `rename = \"...\"`, \
                         `idempotent` or `oneway`",
                    ))
                }
            });
            if let Err(e) = parsed {
                errors.push(e);
            }
            false
        });
        options
    }
}

fn set(meta: &ParseNestedMeta<'_>, slot: &mut Option<LitStr>) -> syn::Result<()> {
    if slot.is_some() {
        return Err(meta.error("this option is given twice"));
    }
    *slot = Some(meta.value()?.parse()?);
    Ok(())
}

fn flag(meta: &ParseNestedMeta<'_>, slot: &mut bool) -> syn::Result<()> {
    if *slot {
        return Err(meta.error("this option is given twice"));
    }
    if !meta.input.is_empty() && !meta.input.peek(syn::Token![,]) {
        return Err(meta.error("this option takes no value"));
    }
    *slot = true;
    Ok(())
}
