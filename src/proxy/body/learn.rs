//! The hook through which `sticky learn` sees a handshake response's body: each data frame
//! from the upstream, before `gzip`, is shown to the [`BodyLearner`], which is let go as soon
//! as it has what it needs. Works on frames of bytes, whichever reader produced them; the
//! frame itself passes on untouched and undelayed.

use bytes::Bytes;
use http_body::Frame;

use crate::upstream::BodyLearner;

/// Shows `frame` to the learner in `slot`, and empties the slot once it is done.
pub(super) fn observe(frame: &Frame<Bytes>, slot: &mut Option<Box<BodyLearner>>) {
    let Some(learner) = slot.as_deref_mut() else {
        return;
    };
    if let Some(data) = frame.data_ref() {
        learner.observe(data);
    }
    if learner.is_done() {
        *slot = None;
    }
}
