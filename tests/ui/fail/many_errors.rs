// Every problem is reported in one build, each at its own token.
#[warren::service]
pub trait Everything {
    type Output;
    fn sync(&self) -> u8;
    async fn generic<T>(&self, value: T);
    async fn by_value(self);
    async fn borrowed(&self, name: &str);
    #[warren(oneway)]
    async fn answer(&self) -> u8;
    #[warren(fast)]
    async fn fine(&self) -> u8;
}

fn main() {}
