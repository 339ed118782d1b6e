#[warren::service]
pub trait Calculator {
    fn add(&self, a: i64, b: i64) -> i64;
}

fn main() {}
