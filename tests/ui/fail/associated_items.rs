#[warren::service]
pub trait Store {
    type Key;
    const LIMIT: usize;
    async fn len(&self) -> usize;
}

fn main() {}
