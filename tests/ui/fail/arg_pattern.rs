#[warren::service]
pub trait Geometry {
    async fn length(&self, (x, y): (f64, f64)) -> f64;
    async fn double(&self, mut n: u32) -> u32;
    async fn ignore(&self, _: u32);
}

fn main() {}
