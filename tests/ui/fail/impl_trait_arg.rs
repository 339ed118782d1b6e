#[warren::service]
pub trait Printer {
    async fn print(&self, text: impl std::fmt::Display);
    async fn render(&self, parts: Vec<impl std::fmt::Display>) -> String;
}

fn main() {}
