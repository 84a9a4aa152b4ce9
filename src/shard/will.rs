//! A session's will: kept small while its connection lives, and held back
//! for its Will Delay Interval (5.0) once the connection is gone.
//!
//! Most devices send a will and most wills carry no properties, while the
//! codec's `Properties` is a 344-byte struct: kept as decoded, every such
//! connection would hold it for nothing. A [`Will`] keeps the properties
//! only when there are some.
//!
//! A delayed will stays in its (offline) session, marked with the instant
//! it is due, and the shard files `(due, session)` in
//! [`Deadlines::wills`](super::timers::Deadlines): one entry per pending
//! will, removed when the will goes (published, or cancelled by the
//! client's return), so the set is bounded by the sessions. It is
//! published when due, when its session ends (expiry, a Clean Start
//! reconnect), or at shutdown, whichever comes first, and dropped when the
//! client resumes the session in time.

use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::session::SessionId;
use super::timers::Stopping;
use super::Shard;
use crate::persist::StoredWill;
use crate::protocol::{LastWill, Properties, Publish, QoS, TopicName};

/// The will of a session's current connection. Shard-local; owned (boxed)
/// by the session; owns its bytes (nothing of the read buffer).
#[derive(Debug)]
pub struct Will {
    topic: TopicName,
    payload: Bytes,
    qos: QoS,
    retain: bool,
    /// `None` when the CONNECT gave no will properties.
    properties: Option<Box<Extra>>,
}

/// What only a will with properties needs. A delayed will always has some:
/// the Will Delay Interval is one.
#[derive(Debug)]
struct Extra {
    properties: Properties,
    /// When a delayed will is due; `None` while its connection lives.
    /// Invariant: `Some(at)` iff `(at, session)` is in `Deadlines::wills`.
    due: Option<Instant>,
}

impl Will {
    /// Keeps `will` from a CONNECT, copying its bytes out of the read buffer.
    pub fn keep(will: &LastWill) -> Box<Will> {
        let mut will = will.clone();
        will.detach();
        let LastWill {
            topic,
            payload,
            qos,
            retain,
            properties,
        } = will;
        let properties = (properties != Properties::default()).then(|| {
            Box::new(Extra {
                properties,
                due: None,
            })
        });
        Box::new(Will {
            topic,
            payload,
            qos,
            retain,
            properties,
        })
    }

    /// The Will Delay Interval, if there is one (0 is none).
    fn delay(&self) -> Option<Duration> {
        let secs = self.properties.as_ref()?.properties.will_delay_interval?;
        (secs > 0).then(|| Duration::from_secs(u64::from(secs)))
    }

    /// The will as a journal keeps it: the PUBLISH it becomes, when it is
    /// due (Unix seconds; 0 while its connection lives) and its Will Delay
    /// Interval.
    pub fn stored(&self) -> StoredWill {
        let mut properties = self
            .properties
            .as_ref()
            .map(|p| p.properties.clone())
            .unwrap_or_default();
        let delay = properties.will_delay_interval.take().unwrap_or(0);
        let due = self
            .properties
            .as_ref()
            .and_then(|p| p.due)
            .map_or(0, |at| {
                let left = at.saturating_duration_since(Instant::now()).as_secs();
                unix_now() + left.max(1)
            });
        let publish = Publish {
            dup: false,
            qos: self.qos,
            retain: self.retain,
            topic: self.topic.clone(),
            packet_id: None,
            payload: self.payload.clone(),
            properties,
        };
        StoredWill {
            publish,
            due,
            delay,
        }
    }

    /// A will read back from a journal (see [`Will::stored`]), to be held
    /// back `delay`: it is then always a delayed one.
    pub fn restored(publish: Publish, delay: Duration) -> Box<Will> {
        let mut properties = publish.properties;
        properties.will_delay_interval = Some(delay.as_secs().clamp(1, u64::from(u32::MAX)) as u32);
        Will::keep(&LastWill {
            topic: publish.topic,
            payload: publish.payload,
            qos: publish.qos,
            retain: publish.retain,
            properties,
        })
    }

    /// The PUBLISH the will becomes when it is due (Will Delay Interval is
    /// not a PUBLISH property).
    pub fn into_publish(self) -> Publish {
        let mut properties = self.properties.map(|p| p.properties).unwrap_or_default();
        properties.will_delay_interval = None;
        Publish {
            dup: false,
            qos: self.qos,
            retain: self.retain,
            topic: self.topic,
            packet_id: None,
            payload: self.payload,
            properties,
        }
    }
}

impl Shard {
    /// The connection of session `sid` ended in a way that sends its will:
    /// publish it now, or (5.0 Will Delay Interval, the session lives on
    /// and the broker is not stopping) hold it in the session until it is
    /// due.
    pub(super) fn will_on_close(self: &Rc<Self>, sid: SessionId, will: Box<Will>) {
        let running = self.stopping.get() == Stopping::Running;
        let lives_on = self
            .sessions
            .borrow()
            .by_id
            .get(&sid)
            .is_some_and(|s| running && s.expiry != 0);
        match will.delay() {
            Some(delay) if lives_on => self.hold_will(sid, will, Instant::now() + delay),
            _ => self.publish_will(sid, *will),
        }
    }

    /// Holds `will` (a delayed one) in session `sid` until `at`.
    pub(super) fn hold_will(&self, sid: SessionId, mut will: Box<Will>, at: Instant) {
        let mut sessions = self.sessions.borrow_mut();
        let Some(s) = sessions.by_id.get_mut(&sid) else {
            return;
        };
        if let Some(extra) = will.properties.as_mut() {
            extra.due = Some(at);
        }
        s.will = Some(will);
        self.deadlines.borrow_mut().wills.insert((at, sid));
        drop(sessions);
        self.journal_will(sid);
    }

    /// Takes session `sid`'s will if it is a delayed one, unfiling it.
    pub(super) fn take_delayed_will(&self, sid: SessionId) -> Option<Box<Will>> {
        let mut sessions = self.sessions.borrow_mut();
        let slot = &mut sessions.by_id.get_mut(&sid)?.will;
        let at = slot.as_ref()?.properties.as_ref()?.due?;
        self.deadlines.borrow_mut().wills.remove(&(at, sid));
        let will = slot.take();
        drop(sessions);
        self.journal_will(sid);
        will
    }

    /// Publishes session `sid`'s delayed will, if it has one (it came due,
    /// the session ends, the broker stops).
    pub(super) fn send_delayed_will(self: &Rc<Self>, sid: SessionId) {
        if let Some(will) = self.take_delayed_will(sid) {
            self.publish_will(sid, *will);
        }
    }
}

/// Seconds since the Unix epoch.
fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn last_will(properties: Properties) -> LastWill {
        LastWill {
            topic: TopicName::from_str("w/t").unwrap(),
            payload: Bytes::from_static(b"gone"),
            qos: QoS::AtLeastOnce,
            retain: true,
            properties,
        }
    }

    #[test]
    fn a_will_without_properties_keeps_none() {
        let will = Will::keep(&last_will(Properties::default()));
        assert!(will.properties.is_none());
        assert!(
            std::mem::size_of::<Will>() <= 88,
            "{}",
            std::mem::size_of::<Will>()
        );
        let p = will.into_publish();
        assert_eq!(
            (p.topic.as_str(), &p.payload[..], p.qos, p.retain),
            ("w/t", &b"gone"[..], QoS::AtLeastOnce, true)
        );
        assert_eq!(p.properties, Properties::default());
    }

    #[test]
    fn will_properties_survive_but_the_delay() {
        let props = Properties {
            content_type: Some("text/plain".into()),
            will_delay_interval: Some(30),
            ..Properties::default()
        };
        let p = Will::keep(&last_will(props)).into_publish();
        assert_eq!(p.properties.content_type.as_deref(), Some("text/plain"));
        assert_eq!(p.properties.will_delay_interval, None);
    }

    #[test]
    fn only_a_non_zero_will_delay_holds_a_will_back() {
        let delayed = |secs| Properties {
            will_delay_interval: secs,
            ..Properties::default()
        };
        let delay = |p| Will::keep(&last_will(p)).delay();
        assert_eq!(delay(delayed(Some(2))), Some(Duration::from_secs(2)));
        assert_eq!(delay(delayed(Some(0))), None);
        assert_eq!(delay(delayed(None)), None);
    }
}
