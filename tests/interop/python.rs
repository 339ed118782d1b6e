//! Running the Python peers: finding an interpreter with pika, and a child
//! process that is killed when dropped, a failing test included.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::OnceLock;
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

/// A Python interpreter that can `import pika`: `$WARREN_PYTHON`, else
/// `python3`, else Debian's `/usr/bin/python3` (where `python3-pika` goes,
/// even when another `python3` comes first on the PATH). Panics, with what
/// to install, when there is none: these tests fail rather than skip.
pub(crate) fn python() -> &'static str {
    static FOUND: OnceLock<String> = OnceLock::new();
    FOUND.get_or_init(|| {
        let candidates: Vec<String> = std::env::var("WARREN_PYTHON")
            .into_iter()
            .chain(["python3".to_owned(), "/usr/bin/python3".to_owned()])
            .collect();
        for py in &candidates {
            let ok = std::process::Command::new(py)
                .args(["-c", "import pika"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if ok {
                return py.clone();
            }
        }
        panic!(
            "the interop tests need Python 3 with pika, and none of {candidates:?} has it: \
             install it (`apt-get install python3 python3-pika`, as scripts/test does) \
             or set WARREN_PYTHON to an interpreter that can `import pika`"
        )
    })
}

/// The path of a script in `tests/interop/`.
pub(crate) fn script(name: &str) -> PathBuf {
    [env!("CARGO_MANIFEST_DIR"), "tests", "interop", name]
        .iter()
        .collect()
}

/// A long-running Python peer that prints `ready` once it consumes.
pub(crate) struct Peer {
    name: &'static str,
    child: Child,
    stdout: Lines<BufReader<ChildStdout>>,
}

impl Peer {
    /// Starts `tests/interop/<name>` with `args` and waits for `ready`.
    pub(crate) async fn start(name: &'static str, args: &[&str]) -> Self {
        let mut child = Command::new(python())
            .arg(script(name))
            .args(args)
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        let stdout = child.stdout.take().expect("piped stdout");
        let mut peer = Self {
            name,
            child,
            stdout: BufReader::new(stdout).lines(),
        };
        assert_eq!(peer.line().await, "ready");
        peer
    }

    /// The peer's next line of output.
    pub(crate) async fn line(&mut self) -> String {
        match self.stdout.next_line().await {
            Ok(Some(line)) => line,
            other => panic!(
                "{} stopped talking ({other:?}, {:?}); its errors are above",
                self.name,
                self.child.wait().await
            ),
        }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}
