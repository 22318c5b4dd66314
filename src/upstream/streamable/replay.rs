//! Resumption of a cut stream (`Last-Event-ID`): the one event a server may send again.

use tracing::debug;

use crate::upstream::event_stream::Event;

/// Drops the one event a server may repeat when a stream is resumed: some servers (rmcp 3.11
/// among them) replay the event named in `Last-Event-ID` as well as those after it. Only an
/// event that was already delivered with that very id is dropped, so nothing is lost when a
/// server gives a priming event and a message the same id.
#[derive(Default)]
pub(super) struct Replay {
    /// Id of the last delivered event that carried an id.
    delivered: Option<String>,
    /// Set after a resume until the first event of the new stream has been seen.
    checking: bool,
}

impl Replay {
    pub(super) fn resumed(&mut self) {
        self.checking = self.delivered.is_some();
    }

    pub(super) fn is_duplicate(&mut self, ev: &Event) -> bool {
        let dup = self.checking && ev.id.is_some() && ev.id == self.delivered;
        self.checking = false;
        if dup {
            debug!(id = ?ev.id, "dropping an event the server replayed on resume");
        } else if ev.id.is_some() {
            self.delivered = ev.id.clone();
        }
        dup
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn ev(id: Option<&str>) -> Event {
        Event {
            event: None,
            id: id.map(str::to_string),
            data: Bytes::from_static(b"{}"),
            too_large: None,
        }
    }

    #[test]
    fn replay_drops_only_a_repeat_of_the_last_delivered_event() {
        let mut r = Replay::default();
        assert!(!r.is_duplicate(&ev(Some("0/1"))));
        assert!(!r.is_duplicate(&ev(Some("1/1"))));
        r.resumed();
        assert!(
            r.is_duplicate(&ev(Some("1/1"))),
            "the replayed event is dropped"
        );
        assert!(!r.is_duplicate(&ev(Some("2/1"))));
        r.resumed();
        assert!(
            !r.is_duplicate(&ev(Some("3/1"))),
            "a new event after resume is kept"
        );
        let mut fresh = Replay::default();
        fresh.resumed();
        assert!(
            !fresh.is_duplicate(&ev(Some("0"))),
            "nothing delivered yet: nothing to drop"
        );
    }
}
