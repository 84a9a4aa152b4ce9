//! A worker: one pinned executor thread holding a share of the run's
//! connections, one task per connection.
//!
//! Life of a worker: connect its connections in waves of [`CONNECT_WAVE`]
//! (subscribers also SUBSCRIBE) and count them ready; a watcher task polls
//! the [`Control`] flags and raises the local `go` (publishers start) and
//! `stop` (everything ends) signals; at stop each task says DISCONNECT and
//! the worker returns its [`WorkerStats`].

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::io;
use std::rc::Rc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use futures_lite::future::or;
use shardmq::protocol::{Disconnect, Packet, ReasonCode};
use shardmq::runtime::{self, time, ExecutorHandle, ExecutorSpec};

use crate::client::{Dial, Session, IDLE_CHUNK, TRAFFIC_CHUNK};
use crate::control::{Control, Counters};
use crate::plan::{Role, RunSpec};
use crate::signal::Signal;
use crate::stats::WorkerStats;

/// Connections a worker establishes concurrently.
pub const CONNECT_WAVE: usize = 128;
/// How often the watcher polls the control flags.
const WATCH_EVERY: Duration = Duration::from_millis(2);
/// How often interval histograms go to the progress line.
const INTERVAL_EVERY: Duration = Duration::from_secs(1);
/// Time allowed for the goodbye DISCONNECT.
const GOODBYE_TIMEOUT: Duration = Duration::from_millis(200);

/// Worker-local state shared by its tasks (`Rc`; never leaves the thread).
pub struct Ctx {
    pub spec: Arc<RunSpec>,
    pub control: Arc<Control>,
    /// This worker's index into `control.counters`.
    pub index: usize,
    /// Raised when publishers may start; `start_ns` is set by then.
    pub go: Signal,
    /// Raised when the run ends.
    pub stop: Signal,
    pub start_ns: Cell<u64>,
    pub stats: RefCell<WorkerStats>,
}

impl Ctx {
    /// This worker's counters.
    pub fn counters(&self) -> &Counters {
        &self.control.counters[self.index]
    }

    /// Counts an error and keeps its message as a sample.
    pub fn error(&self, what: &str, e: impl std::fmt::Display) {
        self.counters().errors.fetch_add(1, Relaxed);
        self.control.error(format!("{what}: {e}"));
    }

    /// The measured window (valid once `go` is raised).
    pub fn window(&self) -> (u64, u64) {
        self.spec.window(self.start_ns.get())
    }

    /// Dial settings for connection `index` named `name`.
    pub fn dial(&self, index: usize, name: &str, idle: bool) -> Dial {
        Dial {
            broker: self.spec.broker,
            source: self.spec.source(index),
            version: self.spec.version,
            client_id: format!("sl-{}-{name}", self.spec.tag),
            keep_alive: self.spec.keep_alive,
            read_chunk: if idle { IDLE_CHUNK } else { TRAFFIC_CHUNK },
        }
    }
}

/// Starts worker `index` on `core` with its connections.
pub fn spawn(
    index: usize,
    core: Option<usize>,
    conns: Vec<(usize, Role)>,
    spec: Arc<RunSpec>,
    control: Arc<Control>,
) -> io::Result<ExecutorHandle<WorkerStats>> {
    let exec = ExecutorSpec::new(format!("load-{index}"), core);
    runtime::start(&exec, move || async move {
        let ctx = Rc::new(Ctx {
            spec,
            control,
            index,
            go: Signal::default(),
            stop: Signal::default(),
            start_ns: Cell::new(0),
            stats: RefCell::new(WorkerStats::default()),
        });
        run(ctx.clone(), conns).await;
        ctx.stats.replace(WorkerStats::default())
    })
}

async fn run(ctx: Rc<Ctx>, conns: Vec<(usize, Role)>) {
    runtime::spawn(watch(ctx.clone()));
    let mut tasks = Vec::with_capacity(conns.len());
    for wave in conns.chunks(CONNECT_WAVE) {
        let opening: Vec<_> = wave
            .iter()
            .map(|(i, role)| runtime::spawn_joinable(establish(ctx.clone(), *i, role.clone())))
            .collect();
        for (opened, (_, role)) in opening.into_iter().zip(wave) {
            if let Some(Some(session)) = opened.await {
                tasks.push(runtime::spawn_joinable(serve(
                    ctx.clone(),
                    role.clone(),
                    session,
                )));
            }
        }
        if ctx.stop.is_raised() {
            break;
        }
    }
    for t in tasks {
        t.await;
    }
    ctx.stop.wait().await;
}

/// Polls the control flags; raises `go` and `stop`; ships interval histograms.
async fn watch(ctx: Rc<Ctx>) {
    let mut last_interval = crate::clock::now_ns();
    loop {
        time::sleep(WATCH_EVERY).await;
        if !ctx.go.is_raised() {
            if let Some(start) = ctx.control.start_ns() {
                ctx.start_ns.set(start);
                ctx.go.raise();
            }
        }
        let now = crate::clock::now_ns();
        if now - last_interval >= crate::clock::ns(INTERVAL_EVERY) {
            last_interval = now;
            let h = std::mem::replace(
                &mut ctx.stats.borrow_mut().interval,
                crate::stats::new_histogram(),
            );
            ctx.control.push_interval(h);
        }
        if ctx.control.is_stopped() {
            ctx.stop.raise();
            return;
        }
    }
}

/// Opens connection `index` for `role` (subscribing subscribers); `None`
/// (with the error counted) on failure or timeout. Storm roles need no
/// connection and get `Some(None)`.
async fn establish(ctx: Rc<Ctx>, index: usize, role: Role) -> Option<Option<Session>> {
    let name = match &role {
        Role::Publisher { id, .. } => format!("p{id}"),
        Role::Subscriber { id, .. } => format!("s{id}"),
        Role::Idle { id } => format!("i{id}"),
        Role::Storm { .. } => {
            ctx.counters().ready.fetch_add(1, Relaxed);
            return Some(None);
        }
    };
    let dial = ctx.dial(index, &name, matches!(role, Role::Idle { .. }));
    let open = async {
        let mut s = Session::open(&dial).await?;
        if let Role::Subscriber { filter, .. } = &role {
            s.subscribe(filter, ctx.spec.qos).await?;
        }
        Ok::<_, io::Error>(s)
    };
    let outcome = or(
        async { time::timeout(ctx.spec.connect_timeout, open).await },
        async {
            ctx.stop.wait().await;
            None
        },
    )
    .await;
    match outcome {
        Some(Ok(s)) => {
            ctx.counters().ready.fetch_add(1, Relaxed);
            Some(Some(s))
        }
        Some(Err(e)) => fail(&ctx, &name, e),
        None if ctx.stop.is_raised() => None,
        None => fail(
            &ctx,
            &name,
            format!("no CONNACK/SUBACK within {:?}", ctx.spec.connect_timeout),
        ),
    }
}

fn fail<T>(ctx: &Ctx, name: &str, e: impl std::fmt::Display) -> Option<T> {
    ctx.counters().failed.fetch_add(1, Relaxed);
    ctx.control.error(format!("connection {name}: {e}"));
    None
}

/// Runs a connection's role until it ends or the run stops, then says goodbye.
async fn serve(ctx: Rc<Ctx>, role: Role, session: Option<Session>) {
    match (role, session) {
        (Role::Publisher { id, topic }, Some(s)) => crate::publisher::run(ctx, id, topic, s).await,
        (Role::Subscriber { id, .. }, Some(s)) => crate::subscriber::run(ctx, id, s).await,
        (Role::Idle { .. }, Some(s)) => crate::subscriber::idle(ctx, s).await,
        (Role::Storm { index, of }, _) => crate::storm::run(ctx, index, of).await,
        (_, None) => {}
    }
}

/// Runs `body` until it finishes or the run stops.
pub async fn until_stopped(ctx: &Ctx, body: impl Future<Output = ()>) {
    or(body, ctx.stop.wait()).await
}

/// Best-effort DISCONNECT before the connection is dropped; skipped when a
/// write was cut short (the stream is mid-packet, closing is all we can do).
pub async fn goodbye(session: &mut crate::client::Writer) {
    if !session.buf.is_empty() {
        return;
    }
    let bye = Packet::Disconnect(Disconnect::new(ReasonCode::NormalDisconnection));
    let _ = time::timeout(GOODBYE_TIMEOUT, session.send(&bye)).await;
}
