//! The server adapter: `CalculatorServer<S>`, a `tower::Service` that
//! decodes a request, calls the implementation and encodes its reply.

use crate::args;
use crate::call::{self, type_ident};
use crate::parse::{Output, Service};
use proc_macro2::{Span, TokenStream};
use quote::quote;

pub(crate) fn generate(service: &Service) -> TokenStream {
    let vis = &service.item.vis;
    let trait_ident = &service.item.ident;
    let server = type_ident(service, "Server");
    let server_name = server.to_string();
    let consts = call::consts(service);
    let doc = format!(
        "Serves an implementation of [`{trait_ident}`]: a `tower::Service` of \
         `warren::Request` that runs the method the request names and replies in the \
         request's codec. Register it with a transport or a node; wrap it in tower \
         layers for server middleware.\n\n\
         Bad input never panics it: an unknown method gets an `unknown_method` reply, \
         undecodable arguments `bad_request`, and a handler that panics `internal`."
    );
    // Hygienic names, so that no argument of the user's can shadow them.
    let request = quote::format_ident!("request", span = Span::mixed_site());
    let shared = quote::format_ident!("service", span = Span::mixed_site());
    let share = (!service.methods.is_empty())
        .then(|| quote!(let #shared = ::warren::codegen::Clone::clone(&self.inner);));
    let arms = service.methods.iter().map(|method| {
        let wire = &method.wire;
        let ident = &method.ident;
        let pattern = args::construct(service, method);
        let args = method.args.iter().map(|(arg, _)| arg);
        let call = quote!(<S as #trait_ident>::#ident(&#shared, #(#args),*).await);
        let reply = match method.output {
            Output::Value | Output::Oneway => quote!(::warren::codegen::Value(#call)),
            Output::Fallible { .. } => quote!(::warren::codegen::Fallible(#call)),
        };
        quote! {
            #wire => ::warren::codegen::serve(&#request, move |#pattern| async move { #reply }),
        }
    });
    quote! {
        #[doc = #doc]
        // Not every program uses every part of the generated API.
        #[allow(dead_code)]
        #vis struct #server<S> {
            inner: ::warren::codegen::Arc<S>,
        }

        #[allow(dead_code)]
        impl<S> #server<S> {
            #consts
        }

        #[allow(dead_code)]
        impl<S: #trait_ident> #server<S> {
            /// Serves `service`.
            pub fn new(service: S) -> Self {
                Self::from_arc(::warren::codegen::Arc::new(service))
            }

            /// Serves a `service` shared with other parts of the program.
            pub fn from_arc(service: ::warren::codegen::Arc<S>) -> Self {
                Self { inner: service }
            }
        }

        impl<S> ::warren::codegen::NamedService for #server<S> {
            const SERVICE: &'static str = Self::SERVICE;
            const METHODS: &'static [&'static str] = Self::METHODS;
        }

        impl<S> ::warren::codegen::Clone for #server<S> {
            fn clone(&self) -> Self {
                Self { inner: ::warren::codegen::Clone::clone(&self.inner) }
            }
        }

        impl<S> ::warren::codegen::Debug for #server<S> {
            fn fmt(
                &self,
                f: &mut ::warren::codegen::Formatter<'_>,
            ) -> ::warren::codegen::FmtResult {
                f.debug_struct(#server_name)
                    .field("service", &Self::SERVICE)
                    .finish_non_exhaustive()
            }
        }

        impl<S> ::warren::codegen::Service<::warren::codegen::Request> for #server<S>
        where
            S: #trait_ident,
        {
            type Response = ::warren::codegen::Response;
            type Error = ::warren::codegen::Error;
            type Future = ::warren::codegen::BoxFuture<
                'static,
                ::warren::codegen::Result<::warren::codegen::Response, ::warren::codegen::Error>,
            >;

            fn poll_ready(
                &mut self,
                _: &mut ::warren::codegen::TaskContext<'_>,
            ) -> ::warren::codegen::Poll<::warren::codegen::Result<(), ::warren::codegen::Error>> {
                ::warren::codegen::Poll::Ready(::warren::codegen::Ok(()))
            }

            fn call(&mut self, #request: ::warren::codegen::Request) -> Self::Future {
                #share
                match #request.method.as_str() {
                    #(#arms)*
                    _ => ::warren::codegen::unknown_method(&#request, Self::SERVICE, Self::METHODS),
                }
            }
        }
    }
}
