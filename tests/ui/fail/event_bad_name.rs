// An event's name must be `domain.action` in lowercase words: each of
// these is refused at compile time, with what to write instead.
#[derive(serde::Serialize, serde::Deserialize, warren::Event)]
#[event(name = "TicketCreated")]
struct NoDomain {
    id: u64,
}

#[derive(serde::Serialize, serde::Deserialize, warren::Event)]
#[event(name = "ticket.Created", version = 2)]
struct Uppercase {
    id: u64,
}

#[derive(serde::Serialize, serde::Deserialize, warren::Event)]
#[event(name = "ticket.*")]
struct Wildcard {
    id: u64,
}

#[derive(serde::Serialize, serde::Deserialize, warren::Event)]
#[event(name = "ticket.created", version = 0)]
struct VersionZero {
    id: u64,
}

#[derive(serde::Serialize, serde::Deserialize, warren::Event)]
struct Unnamed {
    id: u64,
}

fn main() {}
