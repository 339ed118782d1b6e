//! Hygiene: generated code names everything by its full path.
#![no_implicit_prelude]

mod api {
    #[::warren::service]
    pub trait Echo {
        async fn echo(&self, text: ::std::string::String) -> ::std::string::String;
        async fn check(&self, n: u32) -> ::std::result::Result<u32, ::std::string::String>;
        #[warren(oneway)]
        async fn ping(&self);
    }
}

struct Parrot;

impl api::Echo for Parrot {
    async fn echo(&self, text: ::std::string::String) -> ::std::string::String {
        text
    }
    async fn check(&self, n: u32) -> ::std::result::Result<u32, ::std::string::String> {
        ::std::result::Result::Ok(n)
    }
    async fn ping(&self) {}
}

fn main() {
    let mut local = ::warren::Local::new();
    local.serve(
        ::std::result::Result::unwrap(::warren::ServiceType::new("echo")),
        ::warren::ServiceId::random(),
        api::EchoServer::new(Parrot),
    );
    let client = api::EchoClient::new(local);
    let runtime = ::std::result::Result::unwrap(
        ::tokio::runtime::Builder::new_current_thread().enable_all().build(),
    );
    let echoed = runtime.block_on(client.echo(::std::borrow::ToOwned::to_owned("hi")));
    ::std::assert_eq!(::std::result::Result::unwrap(echoed), "hi");
}
