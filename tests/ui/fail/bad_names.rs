#[warren::service(name = "calc.v1")]
pub trait Calculator {
    #[warren(rename = "Calculator add")]
    async fn add(&self, a: i64, b: i64) -> i64;
    async fn sum(&self, a: i64, b: i64) -> i64;
    #[warren(rename = "Calculator.sum")]
    async fn total(&self, a: i64, b: i64) -> i64;
    async fn gather(&self) -> Vec<i64>;
}

#[warren::service]
pub trait Ünicode {
    async fn go(&self);
}

fn main() {}
