//! Reading the annotated trait into a [`Service`], reporting everything
//! that cannot be served remotely.

use crate::attrs::{MethodOptions, ServiceOptions};
use crate::errors::Errors;
use crate::names;
use crate::types::{self, Role};
use proc_macro2::TokenStream;
use std::collections::HashMap;
use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::{Attribute, FnArg, Ident, ItemTrait, Pat, ReturnType, TraitItem, TraitItemFn, Type};

/// Inherent methods of the generated client and gather types: a trait
/// method with one of these names would clash with them.
const RESERVED: &[&str] = &[
    "new",
    "gather",
    "with_address",
    "with_timeout",
    "with_header",
    "with_content_type",
    "expect",
];

/// A service: the trait (without its `#[warren]` attributes) and its methods.
pub(crate) struct Service {
    pub(crate) item: ItemTrait,
    /// The service type: the default address of its clients.
    pub(crate) name: String,
    pub(crate) methods: Vec<Method>,
}

/// How a method's result travels.
pub(crate) enum Output {
    /// A plain value, encoded bare.
    Value,
    /// `Result<T, E>`: `E` is sent as an `application` status.
    Fallible { ok: Box<Type>, err: Box<Type> },
    /// `#[warren(oneway)]`: nothing.
    Oneway,
}

/// One method of the service.
pub(crate) struct Method {
    pub(crate) ident: Ident,
    /// The method's doc attributes, repeated on the client's methods.
    pub(crate) docs: Vec<Attribute>,
    /// The method name on the wire (`Calculator.add`).
    pub(crate) wire: String,
    pub(crate) args: Vec<(Ident, Type)>,
    /// The declared return type; `()` when there is none.
    pub(crate) ret: Type,
    pub(crate) output: Output,
    pub(crate) idempotent: bool,
}

impl Service {
    /// Parses the macro's arguments and the trait, collecting all errors.
    pub(crate) fn parse(args: TokenStream, item: TokenStream) -> syn::Result<Self> {
        let mut errors = Errors::default();
        let options = ServiceOptions::parse(args, &mut errors);
        let mut item: ItemTrait = match syn::parse2(item.clone()) {
            Ok(item) => item,
            Err(_) => {
                return Err(errors.fail(
                    item,
                    "#[warren::service] goes on a trait whose methods are the service's calls",
                ))
            }
        };
        let name = service_name(&item, options, &mut errors);
        if !item.generics.params.is_empty() || item.generics.where_clause.is_some() {
            errors.spanned(
                &item.generics,
                "generic service traits are not supported by #[warren::service]: \
                 a remote call needs concrete types",
            );
        }
        let trait_name = item.ident.unraw().to_string();
        let mut methods = Vec::new();
        for trait_item in &mut item.items {
            match trait_item {
                TraitItem::Fn(f) => {
                    if let Some(m) = Method::parse(f, &trait_name, &mut errors) {
                        methods.push(m);
                    }
                }
                TraitItem::Type(t) => errors.spanned(
                    &*t,
                    "associated types are not supported in a #[warren::service] trait; \
                     it can hold only `async fn` methods",
                ),
                TraitItem::Const(c) => errors.spanned(
                    &*c,
                    "associated consts are not supported in a #[warren::service] trait; \
                     it can hold only `async fn` methods",
                ),
                other => errors.spanned(
                    &*other,
                    "a #[warren::service] trait can hold only `async fn` methods",
                ),
            }
        }
        check_unique(&methods, &mut errors);
        errors.finish(Self {
            item,
            name,
            methods,
        })
    }
}

fn service_name(item: &ItemTrait, options: ServiceOptions, errors: &mut Errors) -> String {
    if let Some(lit) = options.name {
        let name = lit.value();
        if let Some(problem) = names::service_type_problem(&name) {
            errors.spanned(lit, problem);
        }
        return name;
    }
    let name = names::snake_case(&item.ident.unraw().to_string());
    if let Some(problem) = names::service_type_problem(&name) {
        errors.spanned(
            &item.ident,
            format!("{problem}; choose one with #[warren::service(name = \"...\")]"),
        );
    }
    name
}

fn check_unique(methods: &[Method], errors: &mut Errors) {
    let mut seen: HashMap<&str, &Ident> = HashMap::new();
    for m in methods {
        if let Some(first) = seen.insert(&m.wire, &m.ident) {
            errors.spanned(
                &m.ident,
                format!(
                    "`{}` is already the wire name of `{first}`; give one of them \
                     another with #[warren(rename = \"...\")]",
                    m.wire
                ),
            );
        }
        if RESERVED.contains(&m.ident.unraw().to_string().as_str()) {
            errors.spanned(
                &m.ident,
                format!(
                    "a method named `{}` would clash with the generated client's own \
                     method; rename it in Rust and keep its wire name with \
                     #[warren(rename = \"{}\")]",
                    m.ident, m.wire
                ),
            );
        }
    }
}

impl Method {
    fn parse(f: &mut TraitItemFn, trait_name: &str, errors: &mut Errors) -> Option<Self> {
        let options = MethodOptions::take(&mut f.attrs, errors);
        let sig = &f.sig;
        if sig.asyncness.is_none() {
            errors.spanned(
                sig.fn_token,
                "#[warren::service] methods must be `async fn`: add `async` before `fn`",
            );
        }
        if let Some(c) = &sig.constness {
            errors.spanned(c, "#[warren::service] methods cannot be `const`");
        }
        if let Some(u) = &sig.unsafety {
            errors.spanned(u, "#[warren::service] methods cannot be `unsafe`");
        }
        if let Some(abi) = &sig.abi {
            errors.spanned(abi, "#[warren::service] methods cannot have an ABI");
        }
        if let Some(v) = &sig.variadic {
            errors.spanned(v, "#[warren::service] methods cannot be variadic");
        }
        if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
            errors.spanned(
                &sig.generics,
                "generic methods are not supported by #[warren::service]: a remote call \
                 needs concrete argument and return types",
            );
        }
        check_receiver(f, errors);
        let args = arguments(f, errors);
        let ret = match &f.sig.output {
            ReturnType::Default => syn::parse_quote!(()),
            ReturnType::Type(_, ty) => (**ty).clone(),
        };
        types::check(&ret, Role::Return, errors);
        let output = if options.oneway {
            if !types::is_unit(&ret) {
                errors.spanned(
                    &ret,
                    "a #[warren(oneway)] method has no result value: remove the return type",
                );
            }
            Output::Oneway
        } else if let Some((ok, err)) = types::fallible(&ret) {
            Output::Fallible {
                ok: Box::new(ok),
                err: Box::new(err),
            }
        } else {
            Output::Value
        };
        let wire = match &options.rename {
            Some(lit) => {
                if let Some(problem) = names::method_problem(&lit.value()) {
                    errors.spanned(lit, problem);
                }
                lit.value()
            }
            None => format!("{trait_name}.{}", f.sig.ident.unraw()),
        };
        let docs = f
            .attrs
            .iter()
            .filter(|a| a.path().is_ident("doc"))
            .cloned()
            .collect();
        Some(Self {
            ident: f.sig.ident.clone(),
            docs,
            wire,
            args,
            ret,
            output,
            idempotent: options.idempotent,
        })
    }
}

fn check_receiver(f: &TraitItemFn, errors: &mut Errors) {
    let sig = &f.sig;
    match sig.inputs.first() {
        Some(FnArg::Receiver(r)) if r.colon_token.is_none() => {
            if r.reference.is_none() {
                errors.spanned(
                    r,
                    "#[warren::service] methods take `&self`, not `self`: one instance \
                     serves every call",
                );
            } else if r.mutability.is_some() {
                errors.spanned(
                    r,
                    "#[warren::service] methods take `&self`, not `&mut self`: calls are \
                     served concurrently; keep mutable state behind a Mutex or an atomic",
                );
            }
        }
        Some(FnArg::Receiver(r)) => errors.spanned(
            r,
            "#[warren::service] methods take a plain `&self` receiver",
        ),
        _ => errors.at(
            sig.paren_token.span.join(),
            "#[warren::service] methods take `&self` as their first parameter",
        ),
    }
}

fn arguments(f: &TraitItemFn, errors: &mut Errors) -> Vec<(Ident, Type)> {
    let mut args = Vec::new();
    for input in &f.sig.inputs {
        let FnArg::Typed(arg) = input else { continue };
        match &*arg.pat {
            Pat::Ident(p) if p.by_ref.is_none() && p.mutability.is_none() && p.subpat.is_none() => {
                args.push((p.ident.clone(), (*arg.ty).clone()));
            }
            pat => errors.at(
                pat.span(),
                "argument patterns are not supported by #[warren::service]: use a plain \
                 name such as `point: Point` (the name is the argument's key on the wire)",
            ),
        }
        types::check(&arg.ty, Role::Argument, errors);
    }
    args
}
