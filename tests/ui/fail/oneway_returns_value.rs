#[warren::service]
pub trait Logger {
    #[warren(oneway)]
    async fn log(&self, line: String) -> bool;
}

fn main() {}
