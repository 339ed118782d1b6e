//! Scatter-gather: `CalculatorGather<T>`, the same methods sent to many
//! instances, each returning one result per instance that answered.

use crate::call::{self, type_ident};
use crate::parse::Service;
use proc_macro2::TokenStream;
use quote::quote;

pub(crate) fn generate(service: &Service) -> TokenStream {
    let vis = &service.item.vis;
    let trait_ident = &service.item.ident;
    let client = type_ident(service, "Client");
    let gather = type_ident(service, "Gather");
    let gather_name = gather.to_string();
    let doc = format!(
        "Calls to many instances of the [`{trait_ident}`] service at once, made with \
         [`{client}::gather`]. Each method returns who answered and what, one entry per \
         instance, in the order the replies came; a failure of one instance is in its \
         entry. Sent to `Address::All`, the instances of other services, which do not \
         have the method, are left out."
    );
    let methods = service.methods.iter().map(|method| {
        let ident = &method.ident;
        let params = call::params(method);
        let ret = &method.ret;
        let request = call::request(service, method);
        let decoder = call::decoder(method);
        let docs = call::docs(method, "Calls, on every instance addressed,");
        quote! {
            #docs
            // As many arguments as the trait's method, where the lint fires already.
            #[allow(clippy::too_many_arguments)]
            pub fn #ident(&self, #params) -> impl ::warren::codegen::Future<
                Output = ::warren::codegen::Result<
                    ::warren::codegen::Vec<(
                        ::warren::codegen::Peer,
                        ::warren::codegen::Result<#ret, ::warren::codegen::Error>,
                    )>,
                    ::warren::codegen::Error,
                >,
            > + use<T> {
                ::warren::codegen::gather(
                    ::warren::codegen::Clone::clone(&self.inner),
                    ::warren::codegen::Clone::clone(self.options.service()),
                    #request,
                    self.expect,
                    #decoder,
                )
            }
        }
    });
    quote! {
        #[doc = #doc]
        // Not every program uses every part of the generated API.
        #[allow(dead_code)]
        #vis struct #gather<T> {
            inner: T,
            options: ::warren::codegen::CallOptions,
            expect: ::warren::codegen::Option<usize>,
        }

        #[allow(dead_code)]
        impl<T> #gather<T> {
            /// Sends the calls to `address` instead of every instance of the service
            /// (`Address::All`: every instance of every service).
            #[must_use]
            pub fn with_address(mut self, address: ::warren::codegen::Address) -> Self {
                self.options = self.options.address(address);
                self
            }

            /// Gives each call `timeout` from the moment it is made: how long the
            /// gather waits for replies.
            #[must_use]
            pub fn with_timeout(mut self, timeout: ::warren::codegen::Duration) -> Self {
                self.options = self.options.timeout(timeout);
                self
            }

            /// Stops waiting once `n` instances answered, before the deadline.
            #[must_use]
            pub fn expect(mut self, n: usize) -> Self {
                self.expect = ::warren::codegen::Some(n);
                self
            }
        }

        #[allow(dead_code)]
        impl<T> #gather<T>
        where
            T: ::warren::codegen::Service<
                    ::warren::codegen::Gather,
                    Response = ::warren::codegen::Vec<::warren::codegen::Response>,
                    Error = ::warren::codegen::Error,
                > + ::warren::codegen::Clone,
        {
            #(#methods)*
        }

        impl<T: ::warren::codegen::Clone> ::warren::codegen::Clone for #gather<T> {
            fn clone(&self) -> Self {
                Self {
                    inner: ::warren::codegen::Clone::clone(&self.inner),
                    options: ::warren::codegen::Clone::clone(&self.options),
                    expect: self.expect,
                }
            }
        }

        impl<T: ::warren::codegen::Debug> ::warren::codegen::Debug for #gather<T> {
            fn fmt(
                &self,
                f: &mut ::warren::codegen::Formatter<'_>,
            ) -> ::warren::codegen::FmtResult {
                f.debug_struct(#gather_name)
                    .field("transport", &self.inner)
                    .field("options", &self.options)
                    .field("expect", &self.expect)
                    .finish()
            }
        }
    }
}
