// Implementations must give `Send` futures: the server runs them on any thread.
use std::rc::Rc;

#[warren::service]
pub trait Counter {
    async fn next(&self) -> u64;
}

struct Local;

impl Counter for Local {
    async fn next(&self) -> u64 {
        let shared = Rc::new(1);
        std::future::ready(()).await;
        *shared
    }
}

fn main() {}
