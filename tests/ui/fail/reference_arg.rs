#[warren::service]
pub trait Greeter {
    async fn greet(&self, name: &str) -> String;
    async fn greet_all(&self, names: Vec<&'static str>) -> String;
    async fn last(&self, names: Vec<String>) -> &'static str;
}

fn main() {}
