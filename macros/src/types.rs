//! Which argument and return types can cross the wire, and how a return
//! type is sent (a plain value, or `Result<T, E>` with an application error).

use crate::errors::Errors;
use proc_macro2::{Span, TokenStream, TokenTree};
use quote::ToTokens;
use syn::{GenericArgument, PathArguments, Type};

/// Where a type appears, for the error messages.
#[derive(Clone, Copy)]
pub(crate) enum Role {
    Argument,
    Return,
}

/// Reports a type that cannot be sent: a reference, `impl Trait`, `Self`,
/// or a borrowed lifetime, anywhere in it.
pub(crate) fn check(ty: &Type, role: Role, errors: &mut Errors) {
    match ty {
        Type::Reference(_) => errors.spanned(ty, reference(role)),
        Type::ImplTrait(_) => errors.spanned(ty, impl_trait(role)),
        _ => {
            if let Some((span, message)) = scan(ty.to_token_stream(), role) {
                errors.at(span, message);
            }
        }
    }
}

fn reference(role: Role) -> &'static str {
    match role {
        Role::Argument => {
            "reference arguments are not supported by #[warren::service]: arguments are \
             sent over the wire; use an owned type such as String (instead of &str) or \
             Vec<T> (instead of &[T])"
        }
        Role::Return => {
            "a #[warren::service] method cannot return a reference: the result is sent \
             over the wire; use an owned type such as String or Vec<T>"
        }
    }
}

fn impl_trait(role: Role) -> &'static str {
    match role {
        Role::Argument => {
            "`impl Trait` arguments are not supported by #[warren::service]: the server \
             must know the concrete type to decode; use a concrete type that implements \
             Serialize and Deserialize"
        }
        Role::Return => {
            "a #[warren::service] method cannot return `impl Trait`: the client must know \
             the concrete type to decode; use a concrete type"
        }
    }
}

/// Finds a nested reference, `impl`, `Self` or non-`'static` lifetime.
fn scan(tokens: TokenStream, role: Role) -> Option<(Span, String)> {
    let mut tokens = tokens.into_iter().peekable();
    while let Some(token) = tokens.next() {
        match &token {
            TokenTree::Group(group) => {
                if let Some(found) = scan(group.stream(), role) {
                    return Some(found);
                }
            }
            TokenTree::Punct(p) if p.as_char() == '&' => {
                return Some((p.span(), reference(role).to_owned()))
            }
            TokenTree::Punct(p) if p.as_char() == '\'' => match tokens.peek() {
                Some(TokenTree::Ident(name)) if name != "static" => {
                    return Some((
                        name.span(),
                        format!(
                            "borrowed types cannot cross the wire: remove the lifetime \
                             `'{name}` and use an owned type"
                        ),
                    ));
                }
                _ => {}
            },
            TokenTree::Ident(id) if id == "impl" => {
                return Some((id.span(), impl_trait(role).to_owned()))
            }
            TokenTree::Ident(id) if id == "Self" => {
                return Some((
                    id.span(),
                    "`Self` cannot be sent over the wire: the caller does not know which \
                     type implements the service; name a concrete type"
                        .to_owned(),
                ));
            }
            _ => {}
        }
    }
    None
}

/// `Some((T, E))` for a return type written `Result<T, E>`: its `Err` is
/// the method's own (application) error, distinct from transport errors.
/// A one-argument alias such as `io::Result<T>` is sent as a plain value.
pub(crate) fn fallible(ty: &Type) -> Option<(Type, Type)> {
    let Type::Path(path) = ty else { return None };
    if path.qself.is_some() {
        return None;
    }
    let last = path.path.segments.last()?;
    if last.ident != "Result" {
        return None;
    }
    let PathArguments::AngleBracketed(args) = &last.arguments else {
        return None;
    };
    let mut types = args.args.iter().map(|arg| match arg {
        GenericArgument::Type(ty) => Some(ty.clone()),
        _ => None,
    });
    match (types.next(), types.next(), types.next()) {
        (Some(Some(ok)), Some(Some(err)), None) => Some((ok, err)),
        _ => None,
    }
}

/// Whether `ty` is `()`.
pub(crate) fn is_unit(ty: &Type) -> bool {
    matches!(ty, Type::Tuple(tuple) if tuple.elems.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use syn::parse_quote;

    #[test]
    fn finds_results() {
        let (ok, err) = fallible(&parse_quote!(Result<f64, MathError>)).unwrap();
        assert_eq!(ok, parse_quote!(f64));
        assert_eq!(err, parse_quote!(MathError));
        assert!(fallible(&parse_quote!(std::result::Result<(), E>)).is_some());
        assert!(fallible(&parse_quote!(io::Result<u8>)).is_none());
        assert!(fallible(&parse_quote!(Vec<u8>)).is_none());
    }

    #[test]
    fn scans_nested_types() {
        let bad: [Type; 4] = [
            parse_quote!(Vec<&str>),
            parse_quote!(Option<Box<Self>>),
            parse_quote!(Cow<'a, str>),
            parse_quote!(Vec<impl Display>),
        ];
        for ty in bad {
            assert!(scan(ty.to_token_stream(), Role::Argument).is_some());
        }
        let good: Type = parse_quote!(HashMap<String, Cow<'static, str>>);
        assert!(scan(good.to_token_stream(), Role::Argument).is_none());
    }
}
