#[warren::service(version = 2)]
pub trait Clock {
    #[warren(retry)]
    async fn now(&self) -> u64;
    #[warren(oneway = true)]
    async fn tick(&self);
}

fn main() {}
