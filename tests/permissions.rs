//! Least privilege: a service and a caller run under users limited to the
//! permissions SECURITY.md lists, on a vhost of their own set apart from
//! the URL (`Config::vhost`); each user can do its own part and not the
//! other's.
mod support;

use support::broker::PrivateBroker;
use support::handler::{echo, Hits};
use support::request;
use warren::{Address, Client, Config, Connection, ContentType, Error, Node, ServiceType};

/// The permissions (configure, write, read) SECURITY.md gives a service of
/// type `t` on the exchange `x` (`stage7` by default).
fn service_permissions(x: &str, t: &ServiceType) -> [String; 3] {
    let queues = format!("{t}|{t}-.*");
    [
        format!("^({x}|{queues})$"),
        format!("^({x}|amq\\.default|{queues})$"),
        format!("^({x}|{queues})$"),
    ]
}

/// The permissions SECURITY.md gives a process that only calls.
fn caller_permissions(x: &str) -> [String; 3] {
    [
        format!("^{x}$"),
        format!("^({x}|amq\\.default)$"),
        "^$".to_owned(),
    ]
}

fn config(base: &Config, user: &str, port: u16, vhost: &str) -> Config {
    // The URL names the default vhost: `Config::vhost` replaces it.
    base.clone()
        .url(format!("amqp://{user}:pw@127.0.0.1:{port}/%2f"))
        .unwrap()
        .vhost(vhost)
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_and_a_caller_run_with_least_privilege_on_their_own_vhost() {
    let broker = PrivateBroker::new();
    broker.start().await;
    let vhost = "orders/eu";
    broker.ctl(&["add_vhost", vhost]).await;
    let t = support::service_type("lp");
    // The tests' config, whose exchange is the test's own.
    let base = support::config();
    let x = base.exchange.clone();
    for (user, [configure, write, read]) in [
        ("svc", service_permissions(&x, &t)),
        ("caller", caller_permissions(&x)),
    ] {
        broker.ctl(&["add_user", user, "pw"]).await;
        broker
            .ctl(&[
                "set_permissions",
                "-p",
                vhost,
                user,
                &configure,
                &write,
                &read,
            ])
            .await;
    }

    let svc = Connection::connect(config(&base, "svc", broker.port(), vhost))
        .await
        .unwrap();
    let node = Node::builder(t.clone())
        .serve(&svc, echo(&Hits::default()))
        .await
        .unwrap();
    let caller = Connection::connect(config(&base, "caller", broker.port(), vhost))
        .await
        .unwrap();
    let client = Client::new(&caller);
    for address in [
        Address::any(&t).unwrap(),
        Address::Instance(node.id().clone()),
    ] {
        let reply = client
            .call(request(address, "Echo.say", ContentType::Json, &"hi"))
            .await
            .unwrap();
        assert_eq!(reply.decode::<String>().unwrap(), "hi");
    }
    // The queues live on the vhost set apart from the URL.
    let queues = broker.ctl(&["list_queues", "-p", vhost, "name"]).await;
    assert!(queues.lines().any(|q| q == t.as_str()), "{queues}");

    // The caller's user cannot serve: its permissions are for calling.
    let err = Node::builder(t.clone())
        .serve(&caller, echo(&Hits::default()))
        .await
        .unwrap_err();
    let Error::AccessRefused { context, reason } = &err else {
        panic!("not AccessRefused: {err}");
    };
    assert!(context.starts_with("declare queue"), "{context}");
    assert!(reason.contains("caller"), "{reason}");
    assert!(err.to_string().contains("SECURITY.md"), "{err}");
    node.shutdown().await;
}

/// A vhost set apart from the URL that the broker does not have fails at
/// once, naming that setting rather than the URL's.
#[tokio::test]
async fn an_unknown_vhost_set_apart_names_its_setting() {
    let cfg = support::config()
        .with_env_from(|k| (k == "WARREN_VHOST").then(|| "warren-no-such-vhost".to_owned()))
        .unwrap();
    let err = Connection::connect(cfg).await.unwrap_err();
    let Error::VhostNotFound { vhost, setting, .. } = &err else {
        panic!("not VhostNotFound: {err}");
    };
    assert_eq!(
        (vhost.as_str(), setting.as_str()),
        ("warren-no-such-vhost", "WARREN_VHOST")
    );
    assert!(err.to_string().contains("WARREN_VHOST"), "{err}");
    assert!(matches!(
        Config::default().vhost(""),
        Err(Error::Config(m)) if m.contains("Config::vhost")
    ));
}
