//! Collecting every error before failing, so a user sees all of them in
//! one build instead of fixing them one compile at a time.

use quote::ToTokens;
use std::fmt::Display;

/// The errors found so far.
#[derive(Default)]
pub(crate) struct Errors(Option<syn::Error>);

impl Errors {
    /// Records `error`.
    pub(crate) fn push(&mut self, error: syn::Error) {
        match &mut self.0 {
            Some(all) => all.combine(error),
            None => self.0 = Some(error),
        }
    }

    /// Records an error pointing at `tokens`.
    pub(crate) fn spanned(&mut self, tokens: impl ToTokens, message: impl Display) {
        self.push(syn::Error::new_spanned(tokens, message));
    }

    /// Records an error at `span`.
    pub(crate) fn at(&mut self, span: proc_macro2::Span, message: impl Display) {
        self.push(syn::Error::new(span, message));
    }

    /// Every error so far and one more pointing at `tokens`.
    pub(crate) fn fail(self, tokens: impl ToTokens, message: impl Display) -> syn::Error {
        let error = syn::Error::new_spanned(tokens, message);
        match self.0 {
            Some(mut all) => {
                all.combine(error);
                all
            }
            None => error,
        }
    }

    /// `Ok(value)` if nothing went wrong, else every error at once.
    pub(crate) fn finish<T>(self, value: T) -> syn::Result<T> {
        match self.0 {
            Some(all) => Err(all),
            None => Ok(value),
        }
    }
}
