//! `#[derive(warren::Event)]`: an event type's name and schema version,
//! checked at compile time.

use proc_macro2::TokenStream;
use quote::quote;
use syn::{DeriveInput, LitInt, LitStr};

/// Expands the derive, or the errors that explain what to change.
pub(crate) fn derive(input: TokenStream) -> TokenStream {
    match expand(input) {
        Ok(out) => out,
        Err(e) => e.to_compile_error(),
    }
}

fn expand(input: TokenStream) -> syn::Result<TokenStream> {
    let input: DeriveInput = syn::parse2(input)?;
    let mut name = None::<LitStr>;
    let mut version = None::<LitInt>;
    for attr in input.attrs.iter().filter(|a| a.path().is_ident("event")) {
        attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("name") {
                name = Some(meta.value()?.parse()?);
                Ok(())
            } else if meta.path.is_ident("version") {
                version = Some(meta.value()?.parse()?);
                Ok(())
            } else {
                Err(meta.error(
                    "unknown option; #[event] takes `name = \"domain.action\"` and `version = N`",
                ))
            }
        })?;
    }
    let Some(name) = name else {
        return Err(syn::Error::new_spanned(
            &input.ident,
            "#[derive(Event)] needs the event's name: #[event(name = \"domain.action\")]",
        ));
    };
    if let Err(why) = check_name(&name.value()) {
        return Err(syn::Error::new_spanned(&name, why));
    }
    let version = match &version {
        Some(v) => {
            let n: u32 = v.base10_parse()?;
            if n == 0 {
                return Err(syn::Error::new_spanned(v, "event versions start at 1"));
            }
            n
        }
        None => 1,
    };
    let ident = &input.ident;
    let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();
    Ok(quote! {
        impl #impl_generics ::warren::events::Event for #ident #ty_generics #where_clause {
            const NAME: &'static str = #name;
            const VERSION: u32 = #version;
        }
    })
}

/// `domain.action`: two or more dot-separated words of lowercase ASCII
/// letters, digits and `_`, each starting with a letter.
fn check_name(name: &str) -> Result<(), String> {
    let words: Vec<&str> = name.split('.').collect();
    let word_ok = |w: &str| {
        w.starts_with(|c: char| c.is_ascii_lowercase())
            && w.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    };
    if words.len() >= 2 && words.iter().all(|w| word_ok(w)) {
        Ok(())
    } else {
        Err(format!(
            "event name `{name}` is not `domain.action`: use dot-separated lowercase words \
             (letters, digits, `_`, each starting with a letter), such as `ticket.created`"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_domain_action() {
        assert!(check_name("ticket.created").is_ok());
        assert!(check_name("ticket.status_changed").is_ok());
        assert!(check_name("audit.user.login").is_ok());
        for bad in [
            "created",
            "Ticket.created",
            "ticket.",
            "ticket.1st",
            "ticket-created",
        ] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn errors_say_what_to_change() {
        let out = derive(quote! {
            #[event(name = "TicketCreated")]
            struct T;
        })
        .to_string();
        assert!(out.contains("is not `domain.action`"), "{out}");
        let out = derive(quote! { struct T; }).to_string();
        assert!(out.contains("needs the event's name"), "{out}");
        let out = derive(quote! {
            #[event(name = "a.b", version = 0)]
            struct T;
        })
        .to_string();
        assert!(out.contains("versions start at 1"), "{out}");
    }
}
