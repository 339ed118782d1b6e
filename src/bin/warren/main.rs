//! `warren`: call services, watch events and handle dead letters from a
//! shell, over the broker the library would use (`Config::from_env`:
//! `WARREN_AMQP_URL`, `RABBITMQ_URL`, …). Built with the `cli` feature:
//! `cargo install --path . --features cli`, or
//! `cargo run --features cli --bin warren -- --help`.
//!
//! Errors are one line on stderr and an exit code (see [`Exit`]); `--json`
//! prints machine-readable output on stdout.

use clap::{Args, CommandFactory, Parser, Subcommand};
use serde_json::{json, Value};
use std::process::ExitCode;
use std::time::Duration;
use warren::events::{DeadLetters, Publisher, RetryPolicy, Tail};
use warren::{
    Address, Client, Code, Config, Connection, ContentType, Delivery, Error, Gather, Layout,
    ManagementError, ManagementStats, QueueStats, Request, Response, ServiceId, ServiceType,
};

/// Exit codes, by what went wrong.
#[derive(Clone, Copy, Debug)]
#[repr(u8)]
enum Exit {
    /// An error not listed below.
    Other = 1,
    /// Bad usage: an unknown option, a bad address, JSON that does not parse.
    Usage = 2,
    /// The broker cannot be reached, or refused the connection.
    Broker = 3,
    /// Nobody listens at the address.
    NoRoute = 4,
    /// No reply within the deadline.
    Timeout = 5,
    /// A reply with an error status: 10 + its place in this list:
    /// bad_request, unknown_method, unsupported_content_type,
    /// payload_too_large, deadline_exceeded, internal, unavailable,
    /// application, unauthenticated, any other code.
    Status = 10,
}

/// A failure: what to print and the exit code.
struct Failure {
    code: u8,
    message: String,
}

impl Failure {
    fn new(exit: Exit, message: impl Into<String>) -> Self {
        Self {
            code: exit as u8,
            message: message.into(),
        }
    }
}

fn status_exit(code: &Code) -> u8 {
    let i = match code {
        Code::BadRequest => 0,
        Code::UnknownMethod => 1,
        Code::UnsupportedContentType => 2,
        Code::PayloadTooLarge => 3,
        Code::DeadlineExceeded => 4,
        Code::Internal => 5,
        Code::Unavailable => 6,
        Code::Application => 7,
        Code::Unauthenticated => 8,
        _ => 9,
    };
    Exit::Status as u8 + i
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        let exit = match &e {
            Error::Remote(status) => {
                return Self {
                    code: status_exit(status.code()),
                    message: format!("{}: {}", status.code(), status.message()),
                }
            }
            Error::NoRoute { .. } => Exit::NoRoute,
            Error::Timeout { .. } => Exit::Timeout,
            Error::Unavailable { .. }
            | Error::ConnectionLost
            | Error::Blocked { .. }
            | Error::AuthenticationRefused { .. }
            | Error::VhostNotFound { .. }
            | Error::Tls { .. }
            | Error::InvalidUrl { .. } => Exit::Broker,
            Error::Name(_)
            | Error::Codec(_)
            | Error::InvalidRequest(_)
            | Error::BodyTooLarge { .. } => Exit::Usage,
            _ => Exit::Other,
        };
        Self::new(exit, e.to_string())
    }
}

type Outcome = Result<(), Failure>;

/// Calls warren services, publishes and tails events, and handles dead
/// letters, over the broker named by WARREN_AMQP_URL (or RABBITMQ_URL).
#[derive(Parser, Debug)]
#[command(name = "warren", version, propagate_version = true)]
struct Cli {
    /// Print JSON on stdout, for scripts.
    #[arg(long, global = true)]
    json: bool,
    /// How long a call, gather or send may take, in seconds.
    #[arg(long, global = true, default_value_t = 10.0, value_name = "SECONDS")]
    timeout: f64,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Calls a method and prints the reply (exit code by its status).
    Call(CallArgs),
    /// Sends a one-way message (persistent, confirmed by the broker).
    Send(CallArgs),
    /// Calls every instance at a multicast address and prints each reply.
    Gather {
        #[command(flatten)]
        call: CallArgs,
        /// Stop as soon as this many replies came.
        #[arg(long)]
        expect: Option<usize>,
    },
    /// Lists the service instances that answer now (type and id).
    Services,
    /// Messages and consumers of a service's queues: its work queue, the
    /// instance queues of --instance, and its event, retry (under the
    /// default retry policy) and dead-letter queues. With
    /// WARREN_MANAGEMENT_URL set (the broker's management API,
    /// `http://user:password@host:15672`), unacknowledged messages and
    /// publish, deliver and ack rates too.
    Stats {
        /// The service type (also the subscribing service's name).
        service: String,
        /// An instance id whose queue to include (repeatable).
        #[arg(long = "instance")]
        instances: Vec<String>,
    },
    /// The exchanges, queues (with their arguments) and bindings warren
    /// declares for a service, under this environment's configuration: its
    /// work queue, the queues of --instance, and with --events or --binding
    /// its event, retry (default retry policy) and dead-letter queues.
    /// Needs no broker.
    Topology {
        /// The service type (also the subscribing service's name).
        service: String,
        /// An instance id whose queue and bindings to include (repeatable).
        #[arg(long = "instance")]
        instances: Vec<String>,
        /// Include the event queues of a subscription of the service.
        #[arg(long)]
        events: bool,
        /// An event type or pattern the subscription binds (repeatable;
        /// implies --events).
        #[arg(long = "binding")]
        bindings: Vec<String>,
    },
    /// Publishes or watches events.
    #[command(subcommand)]
    Events(EventsCommand),
    /// Lists, shows, replays or purges a service's dead-letter queue.
    #[command(subcommand)]
    Dlq(DlqCommand),
    /// Asks a health endpoint (`/health/ready` unless the URL has a path);
    /// exit code 0 when it answers 2xx.
    Health {
        /// A node's or metrics listener's URL: http://host:port[/path].
        url: String,
    },
    /// Prints shell completions.
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
}

#[derive(Args, Debug)]
struct CallArgs {
    /// instance(<id>), any(<type>), every(<type>) or all().
    address: String,
    /// The method's wire name, such as Calculator.add.
    method: String,
    /// The arguments as JSON (default: null).
    args: Option<String>,
}

#[derive(Subcommand, Debug)]
enum EventsCommand {
    /// Publishes one event (version 1 unless --version is given).
    Publish {
        /// Its type, domain.action.
        event_type: String,
        /// Its payload as JSON.
        payload: String,
        /// Its schema version.
        #[arg(long, default_value_t = 1)]
        schema_version: u32,
    },
    /// Prints events as they are published, until Ctrl-C (or --count).
    Tail {
        /// Patterns: an event type, `order.*`, `#` for all.
        #[arg(required = true)]
        patterns: Vec<String>,
        /// Stop after this many events.
        #[arg(long)]
        count: Option<usize>,
    },
}

#[derive(Subcommand, Debug)]
enum DlqCommand {
    /// How many events wait in `<service>.dlq`, and the first few.
    List {
        /// The subscribing service.
        service: String,
        /// How many to list.
        #[arg(long, default_value_t = 10)]
        max: usize,
    },
    /// The first events with their bodies and failure history.
    Show {
        /// The subscribing service.
        service: String,
        /// How many to show.
        #[arg(long, default_value_t = 1)]
        max: usize,
    },
    /// Moves events back to `<service>.q` for a full set of attempts.
    Replay {
        /// The subscribing service.
        service: String,
        /// How many to move (default: all).
        #[arg(long, default_value_t = usize::MAX, hide_default_value = true)]
        max: usize,
    },
    /// Deletes every event in `<service>.dlq`.
    Purge {
        /// The subscribing service.
        service: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(&Failure::new(Exit::Other, format!("cannot start: {e}"))),
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => fail(&f),
    }
}

fn fail(f: &Failure) -> ExitCode {
    eprintln!("warren: {}", f.message);
    ExitCode::from(f.code)
}

async fn run(cli: Cli) -> Outcome {
    let timeout = Duration::try_from_secs_f64(cli.timeout).map_err(|_| {
        Failure::new(
            Exit::Usage,
            format!("--timeout {} is not a duration", cli.timeout),
        )
    })?;
    let json = cli.json;
    match cli.command {
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "warren", &mut std::io::stdout());
            Ok(())
        }
        Command::Health { url } => health(&url, json, timeout).await,
        Command::Call(args) => {
            let request = request(&args, timeout)?;
            let conn = connect().await?;
            let reply = Client::new(&conn).call(request).await;
            conn.close();
            print_reply(&reply?, json);
            Ok(())
        }
        Command::Send(args) => {
            let request = request(&args, timeout)?.with_delivery(Delivery::OneWay);
            let conn = connect().await?;
            let sent = Client::new(&conn).call(request).await;
            conn.close();
            sent?;
            if json {
                println!("{}", json!({"sent": true}));
            } else {
                println!("sent");
            }
            Ok(())
        }
        Command::Gather { call, expect } => {
            let mut gather = Gather::new(request(&call, timeout)?);
            if let Some(n) = expect {
                gather = gather.expect(n);
            }
            let conn = connect().await?;
            let replies = Client::new(&conn).gather(gather).await;
            conn.close();
            print_replies(&replies?, json);
            Ok(())
        }
        Command::Services => services(timeout, json).await,
        Command::Stats { service, instances } => stats(&service, &instances, json).await,
        Command::Topology {
            service,
            instances,
            events,
            bindings,
        } => topology(&service, &instances, events, &bindings, json),
        Command::Events(cmd) => events(cmd, json).await,
        Command::Dlq(cmd) => dlq(cmd, json).await,
    }
}

/// The connection, from the environment; an unreachable broker fails
/// after two rounds unless RABBITMQ_RETRY_ATTEMPTS says otherwise.
async fn connect() -> Result<Connection, Failure> {
    let mut config = Config::from_env().map_err(|e| Failure::new(Exit::Broker, e.to_string()))?;
    if std::env::var_os("RABBITMQ_RETRY_ATTEMPTS").is_none() {
        config.backoff.max_attempts = Some(2);
    }
    Connection::connect(config)
        .await
        .map_err(|e| Failure::new(Exit::Broker, format!("cannot reach the broker: {e}")))
}

fn request(args: &CallArgs, timeout: Duration) -> Result<Request, Failure> {
    let address: Address = args
        .address
        .parse()
        .map_err(|e: warren::NameError| Failure::new(Exit::Usage, e.to_string()))?;
    let body = parse_json(args.args.as_deref().unwrap_or("null"), "the arguments")?;
    Request::encode(address, args.method.as_str(), ContentType::Json, &body)
        .map(|r| r.with_timeout(timeout))
        .map_err(Failure::from)
}

fn parse_json(text: &str, what: &str) -> Result<Value, Failure> {
    serde_json::from_str(text)
        .map_err(|e| Failure::new(Exit::Usage, format!("{what}: not JSON: {e}")))
}

/// The reply body as JSON (MessagePack is decoded; anything else is a
/// string).
fn body(resp: &Response) -> Value {
    resp.decode::<Value>()
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&resp.body).into_owned()))
}

fn from(resp: &Response) -> String {
    match (&resp.from.service, &resp.from.id) {
        (Some(t), Some(id)) => format!("{t}/{id}"),
        (None, Some(id)) => id.to_string(),
        (Some(t), None) => t.to_string(),
        (None, None) => "?".into(),
    }
}

fn print_reply(resp: &Response, json: bool) {
    if json {
        println!(
            "{}",
            json!({"status": resp.status.as_str(), "from": from(resp), "transport": resp.transport.as_str(), "reply": body(resp)})
        );
    } else {
        println!("{}", pretty(&body(resp)));
    }
}

fn print_replies(replies: &[Response], json: bool) {
    if json {
        let all: Vec<Value> = replies
            .iter()
            .map(|r| json!({"status": r.status.as_str(), "from": from(r), "reply": body(r)}))
            .collect();
        println!("{}", Value::Array(all));
        return;
    }
    for r in replies {
        println!("{} {} {}", from(r), r.status, body(r));
    }
}

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default()
}

/// Every node answers a gather to `all()`, even for a method it does not
/// have (with `unknown_method`): the replies say who is there.
async fn services(timeout: Duration, json: bool) -> Outcome {
    let request = Request::new(Address::all(), "warren.services", ContentType::Json, "null")
        .map_err(Failure::from)?
        .with_timeout(timeout.min(Duration::from_secs(2)));
    let conn = connect().await?;
    let replies = Client::new(&conn).gather(Gather::new(request)).await;
    conn.close();
    let replies = match replies {
        Ok(r) => r,
        Err(Error::NoRoute { .. }) => Vec::new(),
        Err(e) => return Err(e.into()),
    };
    let mut found: Vec<(String, String)> = replies
        .iter()
        .map(|r| {
            let name = |v: Option<&str>| v.unwrap_or("?").to_owned();
            (name(r.from.service.as_deref()), name(r.from.id.as_deref()))
        })
        .collect();
    found.sort();
    if json {
        let all: Vec<Value> = found
            .iter()
            .map(|(t, id)| json!({"type": t, "id": id}))
            .collect();
        println!("{}", Value::Array(all));
    } else {
        for (t, id) in &found {
            println!("{t} {id}");
        }
    }
    Ok(())
}

/// A service type and instance ids from the command line.
fn names(service: &str, instances: &[String]) -> Result<(ServiceType, Vec<ServiceId>), Failure> {
    let usage = |e: warren::NameError| Failure::new(Exit::Usage, e.to_string());
    let t = ServiceType::new(service).map_err(usage)?;
    let ids = instances
        .iter()
        .map(|id| ServiceId::new(id).map_err(usage))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((t, ids))
}

fn topology(
    service: &str,
    instances: &[String],
    events: bool,
    bindings: &[String],
    json: bool,
) -> Outcome {
    let (t, ids) = names(service, instances)?;
    let config = Config::from_env().map_err(|e| Failure::new(Exit::Usage, e.to_string()))?;
    let mut layout = Layout::service(&config, &t, &ids);
    if events || !bindings.is_empty() {
        let retry = RetryPolicy::default();
        layout = layout.and(Layout::events(&config, service, bindings, &retry));
    }
    if json {
        println!("{}", serde_json::to_string(&layout).unwrap_or_default());
        return Ok(());
    }
    println!("exchanges");
    for e in &layout.exchanges {
        println!("  {:<40} topic, durable ({})", e.name, e.role);
    }
    println!("queues");
    for q in &layout.queues {
        let kind = serde_json::to_value(q.kind).unwrap_or_default();
        let args: Vec<String> = q
            .arguments
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let durable = if q.durable { "durable" } else { "transient" };
        println!(
            "  {:<40} {:<12} {durable:<9} {}",
            q.name,
            kind.as_str().unwrap_or("?"),
            args.join(" ")
        );
    }
    println!("bindings");
    for b in &layout.bindings {
        println!("  {} -> {} ({})", b.exchange, b.queue, b.key);
    }
    Ok(())
}

async fn stats(service: &str, instances: &[String], json: bool) -> Outcome {
    let (t, ids) = names(service, instances)?;
    let config = Config::from_env().map_err(|e| Failure::new(Exit::Usage, e.to_string()))?;
    if config.management_url.is_some() {
        return managed_stats(&config, service, &t, &ids, json).await;
    }
    let conn = connect().await?;
    let stats = QueueStats::new(&conn);
    let read = async {
        let mut all = stats.service(&t, &ids).await?;
        all.extend(stats.events(service, &RetryPolicy::default()).await?);
        Ok::<_, Error>(all)
    }
    .await;
    conn.close();
    let all = read?;
    if json {
        println!("{}", serde_json::to_string(&all).unwrap_or_default());
        return Ok(());
    }
    println!(
        "{:<40} {:<12} {:>9} {:>9}",
        "queue", "kind", "messages", "consumers"
    );
    for q in &all {
        let kind = serde_json::to_value(q.kind).unwrap_or_default();
        let kind = kind.as_str().unwrap_or("?");
        if q.exists {
            println!(
                "{:<40} {:<12} {:>9} {:>9}",
                q.queue, kind, q.messages, q.consumers
            );
        } else {
            println!("{:<40} {:<12} {:>9} {:>9}", q.queue, kind, "-", "-");
        }
    }
    Ok(())
}

/// `warren stats` through the management API (WARREN_MANAGEMENT_URL):
/// unacknowledged messages and rates too.
async fn managed_stats(
    config: &Config,
    service: &str,
    t: &ServiceType,
    ids: &[ServiceId],
    json: bool,
) -> Outcome {
    let broker = |e: ManagementError| Failure::new(Exit::Broker, e.to_string());
    let stats = ManagementStats::new(config).map_err(broker)?;
    let mut all = stats.service(t, ids).await.map_err(broker)?;
    all.extend(
        stats
            .events(service, &RetryPolicy::default())
            .await
            .map_err(broker)?,
    );
    if json {
        println!("{}", serde_json::to_string(&all).unwrap_or_default());
        return Ok(());
    }
    println!(
        "{:<40} {:<12} {:>9} {:>9} {:>9} {:>10} {:>10} {:>10}",
        "queue", "kind", "ready", "unacked", "consumers", "publish/s", "deliver/s", "ack/s"
    );
    let rate = |r: Option<f64>| r.map_or_else(|| "-".to_owned(), |r| format!("{r:.1}"));
    for q in &all {
        let kind = q.kind.as_str();
        if q.exists {
            println!(
                "{:<40} {:<12} {:>9} {:>9} {:>9} {:>10} {:>10} {:>10}",
                q.queue,
                kind,
                q.messages,
                q.unacked,
                q.consumers,
                rate(q.rates.publish),
                rate(q.rates.deliver),
                rate(q.rates.ack)
            );
        } else {
            println!(
                "{:<40} {:<12} {:>9} {:>9} {:>9} {:>10} {:>10} {:>10}",
                q.queue, kind, "-", "-", "-", "-", "-", "-"
            );
        }
    }
    Ok(())
}

async fn events(cmd: EventsCommand, json: bool) -> Outcome {
    match cmd {
        EventsCommand::Publish {
            event_type,
            payload,
            schema_version,
        } => {
            let payload = parse_json(&payload, "the payload")?;
            let conn = connect().await?;
            let id = Publisher::new(&conn)
                .publish_as(&event_type, schema_version, &payload)
                .await;
            conn.close();
            let id = id?;
            if json {
                println!("{}", json!({"event_id": id, "type": event_type}));
            } else {
                println!("{id}");
            }
            Ok(())
        }
        EventsCommand::Tail { patterns, count } => {
            let conn = connect().await?;
            let mut tail = Tail::start(&conn, &patterns).await?;
            // Scripts wait for this line before publishing.
            eprintln!("warren: tailing {}", patterns.join(" "));
            let mut seen = 0usize;
            while count.is_none_or(|n| seen < n) {
                let event = tokio::select! {
                    e = tail.next() => e,
                    _ = tokio::signal::ctrl_c() => break,
                };
                let Some(event) = event else {
                    return Err(Failure::new(Exit::Broker, "the broker connection was lost"));
                };
                seen += 1;
                let body = match event.dropped {
                    Some(size) => Value::String(format!(
                        "(a body of {size} bytes, over the limit of {} bytes (WARREN_MAX_BODY), was dropped)",
                        conn.config().max_body
                    )),
                    None => event.json().unwrap_or_else(|| {
                        Value::String(String::from_utf8_lossy(&event.body).into_owned())
                    }),
                };
                if json {
                    println!(
                        "{}",
                        json!({"routing_key": event.routing_key, "type": event.event_type, "event_id": event.event_id, "envelope": body})
                    );
                } else {
                    println!(
                        "{} {}\n{}",
                        event.routing_key,
                        event.event_id.as_deref().unwrap_or("-"),
                        pretty(&body)
                    );
                }
            }
            tail.close().await;
            conn.close();
            Ok(())
        }
    }
}

async fn dlq(cmd: DlqCommand, json: bool) -> Outcome {
    let conn = connect().await?;
    let done = dlq_on(&conn, cmd, json).await;
    conn.close();
    done
}

async fn dlq_on(conn: &Connection, cmd: DlqCommand, json: bool) -> Outcome {
    let letter = |d: &warren::events::DeadLetter, with_body: bool| {
        let mut v = json!({
            "event_id": d.event_id, "type": d.event_type, "reason": d.reason,
            "attempts": d.attempts, "first_failure": d.first_failure,
            "last_failure": d.last_failure, "routing_key": d.routing_key,
        });
        if with_body {
            v["body"] = serde_json::from_slice(&d.body)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&d.body).into_owned()));
        }
        v
    };
    match cmd {
        DlqCommand::List { service, max } => {
            let dlq = DeadLetters::new(conn, &service);
            let count = dlq.count().await?;
            let first = dlq.peek(max).await?;
            if json {
                let items: Vec<Value> = first.iter().map(|d| letter(d, false)).collect();
                println!(
                    "{}",
                    json!({"queue": format!("{service}.dlq"), "count": count, "events": items})
                );
            } else {
                println!("{service}.dlq: {count} event(s)");
                for d in &first {
                    println!(
                        "{} {} attempts={} reason={}",
                        d.event_type.as_deref().unwrap_or("?"),
                        d.event_id.as_deref().unwrap_or("-"),
                        d.attempts,
                        d.reason.as_deref().unwrap_or("-")
                    );
                }
            }
            Ok(())
        }
        DlqCommand::Show { service, max } => {
            let first = DeadLetters::new(conn, &service).peek(max).await?;
            let items: Vec<Value> = first.iter().map(|d| letter(d, true)).collect();
            if json {
                println!("{}", Value::Array(items));
            } else {
                for v in &items {
                    println!("{}", pretty(v));
                }
            }
            Ok(())
        }
        DlqCommand::Replay { service, max } => {
            let n = DeadLetters::new(conn, &service).replay(max).await?;
            if json {
                println!("{}", json!({"replayed": n}));
            } else {
                println!("replayed {n} event(s) to {service}.q");
            }
            Ok(())
        }
        DlqCommand::Purge { service } => {
            let n = DeadLetters::new(conn, &service).purge().await?;
            if json {
                println!("{}", json!({"purged": n}));
            } else {
                println!("purged {n} event(s) from {service}.dlq");
            }
            Ok(())
        }
    }
}

async fn health(url: &str, json: bool, timeout: Duration) -> Outcome {
    let mut url = url.trim_end_matches('/').to_owned();
    let has_path = url
        .split_once("://")
        .is_some_and(|(_, rest)| rest.contains('/'));
    if !has_path {
        url.push_str("/health/ready");
    }
    let client = reqwest::Client::builder()
        .timeout(timeout)
        .build()
        .map_err(|e| Failure::new(Exit::Other, e.to_string()))?;
    let resp = client
        .get(&url)
        .send()
        .await
        .map_err(|e| Failure::new(Exit::Other, format!("cannot reach {url}: {e}")))?;
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    if json {
        let body: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        println!("{}", json!({"status": status.as_u16(), "body": body}));
    } else {
        match serde_json::from_str::<Value>(&text) {
            Ok(v) => println!("{} {}", status.as_u16(), pretty(&v)),
            Err(_) => println!("{} {text}", status.as_u16()),
        }
    }
    if status.is_success() {
        Ok(())
    } else {
        Err(Failure::new(
            Exit::Other,
            format!("{url} answered {status}"),
        ))
    }
}
