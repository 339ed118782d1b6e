#[warren::service]
pub struct Calculator;

#[warren::service]
pub trait Generic<T> {
    async fn get(&self) -> u8;
}

fn main() {}
