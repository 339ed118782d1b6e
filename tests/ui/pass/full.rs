//! Every option at once, called over the in-process transport.

use serde::{Deserialize, Serialize};
use std::time::Duration;
use warren::{Local, Address, ContentType};

#[derive(Debug, PartialEq, Serialize, Deserialize)]
pub struct Oops {
    reason: String,
}

impl std::fmt::Display for Oops {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.reason)
    }
}

#[warren::service(name = "kv-store")]
pub trait KeyValue: std::fmt::Debug {
    async fn get(&self, key: String) -> Option<String>;
    #[warren(idempotent, rename = "kv.put")]
    async fn put(&self, key: String, value: String) -> Result<(), Oops>;
    #[warren(oneway)]
    async fn touch(&self, r#type: u8);
    #[warren(oneway)]
    async fn ping(&self) -> ();
    async fn keys(&self) -> std::vec::Vec<String> {
        Vec::new()
    }
    // Arguments named like the server's own locals do not clash with them.
    async fn route(&self, request: u8, service: u8) -> u8;
}

#[derive(Debug)]
struct Store;

impl KeyValue for Store {
    async fn get(&self, key: String) -> Option<String> {
        Some(key)
    }
    async fn put(&self, key: String, _value: String) -> Result<(), Oops> {
        Err(Oops { reason: key })
    }
    async fn touch(&self, _type: u8) {}
    async fn ping(&self) {}
    async fn route(&self, request: u8, service: u8) -> u8 {
        request + service
    }
}

fn main() {
    assert_eq!(KeyValueServer::<Store>::SERVICE, "kv-store");
    assert_eq!(
        KeyValueClient::<Local>::METHODS,
        ["KeyValue.get", "kv.put", "KeyValue.touch", "KeyValue.ping", "KeyValue.keys", "KeyValue.route"]
    );
    let mut local = Local::new();
    local.serve("kv-store".parse().unwrap(), "kv-1".parse().unwrap(), KeyValueServer::new(Store));
    let client = KeyValueClient::new(local)
        .with_address(Address::instance("kv-1").unwrap())
        .with_timeout(Duration::from_secs(5))
        .with_header("x-tenant", "acme")
        .with_content_type(ContentType::Json);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        assert_eq!(client.get("k".into()).await.unwrap(), Some("k".into()));
        assert_eq!(client.put("k".into(), "v".into()).await.unwrap(), Err(Oops { reason: "k".into() }));
        client.touch(1).await.unwrap();
        client.ping().await.unwrap();
        assert!(client.keys().await.unwrap().is_empty());
        assert_eq!(client.route(1, 2).await.unwrap(), 3);
        let all = client
            .gather()
            .with_address(Address::every("kv-store").unwrap())
            .with_timeout(std::time::Duration::from_millis(100))
            .expect(1);
        assert_eq!(all.get("k".into()).await.unwrap().len(), 1);
    });
}
