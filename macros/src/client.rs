//! The typed client: `CalculatorClient<T>` over any transport `T`.

use crate::call::{self, type_ident};
use crate::parse::Service;
use proc_macro2::TokenStream;
use quote::quote;

pub(crate) fn generate(service: &Service) -> TokenStream {
    let vis = &service.item.vis;
    let trait_ident = &service.item.ident;
    let client = type_ident(service, "Client");
    let gather = type_ident(service, "Gather");
    let client_name = client.to_string();
    let consts = call::consts(service);
    let doc = format!(
        "A client of the [`{trait_ident}`] service: each method sends one call over the \
         transport `T` (any `tower::Service` of `warren::Request`) and decodes the \
         reply. Calls go to any one instance of `{}` unless \
         [`with_address`](Self::with_address) says otherwise.\n\n\
         Cheap to clone: a clone shares the transport. The builder methods \
         (`with_*`) set options for every call made through the returned client.",
        service.name
    );
    let methods = service.methods.iter().map(|method| {
        let ident = &method.ident;
        let params = call::params(method);
        let ret = &method.ret;
        let request = call::request(service, method);
        let decoder = call::decoder(method);
        let docs = call::docs(method, "Calls");
        quote! {
            #docs
            // As many arguments as the trait's method, where the lint fires already.
            #[allow(clippy::too_many_arguments)]
            pub fn #ident(&self, #params) -> impl ::warren::codegen::Future<
                Output = ::warren::codegen::Result<#ret, ::warren::codegen::Error>,
            > + use<T> {
                ::warren::codegen::unary(
                    ::warren::codegen::Clone::clone(&self.inner),
                    #request,
                    #decoder,
                )
            }
        }
    });
    quote! {
        #[doc = #doc]
        // Not every program uses every part of the generated API.
        #[allow(dead_code)]
        #vis struct #client<T = ::warren::codegen::Client> {
            inner: T,
            options: ::warren::codegen::CallOptions,
        }

        #[allow(dead_code)]
        impl<T> #client<T> {
            #consts

            /// A client sending its calls over `transport`.
            pub fn new(transport: T) -> Self {
                Self {
                    inner: transport,
                    options: ::warren::codegen::CallOptions::new(Self::SERVICE),
                }
            }

            /// Sends calls to `address` instead of any one instance of the service.
            #[must_use]
            pub fn with_address(mut self, address: ::warren::codegen::Address) -> Self {
                self.options = self.options.address(address);
                self
            }

            /// Gives each call `timeout` from the moment it is made, instead of the
            /// transport's default deadline.
            #[must_use]
            pub fn with_timeout(mut self, timeout: ::warren::codegen::Duration) -> Self {
                self.options = self.options.timeout(timeout);
                self
            }

            /// Adds an application header to every call.
            #[must_use]
            pub fn with_header(
                mut self,
                name: impl ::warren::codegen::Into<::warren::codegen::String>,
                value: impl ::warren::codegen::Into<::warren::codegen::String>,
            ) -> Self {
                self.options = self.options.header(name.into(), value.into());
                self
            }

            /// Encodes calls in `content_type` (MessagePack by default); replies come
            /// back in the same codec.
            #[must_use]
            pub fn with_content_type(
                mut self,
                content_type: ::warren::codegen::ContentType,
            ) -> Self {
                self.options = self.options.content_type(content_type);
                self
            }

            /// The same calls sent to every instance of the service at once
            /// (`Address::Every`; `with_address` sends them elsewhere, such as
            /// `Address::All`), with this client's timeout, headers and content type:
            /// each method returns one result per instance that answered, once
            /// `expect` instances answered or the deadline passed.
            pub fn gather(&self) -> #gather<T>
            where
                T: ::warren::codegen::Clone,
            {
                #gather {
                    inner: ::warren::codegen::Clone::clone(&self.inner),
                    options: ::warren::codegen::Clone::clone(&self.options).every(),
                    expect: ::warren::codegen::None,
                }
            }
        }

        #[allow(dead_code)]
        impl<T> #client<T>
        where
            T: ::warren::codegen::Service<
                    ::warren::codegen::Request,
                    Response = ::warren::codegen::Response,
                    Error = ::warren::codegen::Error,
                > + ::warren::codegen::Clone,
        {
            #(#methods)*
        }

        impl<T: ::warren::codegen::Clone> ::warren::codegen::Clone for #client<T> {
            fn clone(&self) -> Self {
                Self {
                    inner: ::warren::codegen::Clone::clone(&self.inner),
                    options: ::warren::codegen::Clone::clone(&self.options),
                }
            }
        }

        impl<T: ::warren::codegen::Debug> ::warren::codegen::Debug for #client<T> {
            fn fmt(
                &self,
                f: &mut ::warren::codegen::Formatter<'_>,
            ) -> ::warren::codegen::FmtResult {
                f.debug_struct(#client_name)
                    .field("transport", &self.inner)
                    .field("options", &self.options)
                    .finish()
            }
        }
    }
}
