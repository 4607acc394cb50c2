//! Where the holes of a line in the making are: the byte offsets at which its response
//! variables go, kept inline for the usual format. Std only.

/// Formats with at most this many response variables keep their hole offsets inline.
pub const INLINE_HOLES: usize = 8;

/// Where the holes of one line are: byte offsets into the line, one per response variable of its format.
#[derive(Debug, Default)]
pub struct Holes {
    inline: [u32; INLINE_HOLES],
    spill: Vec<u32>,
}

impl Holes {
    pub(super) fn set(&mut self, index: usize, at: usize) {
        let at = u32::try_from(at).unwrap_or(u32::MAX);
        match self.inline.get_mut(index) {
            Some(slot) => *slot = at,
            None => self.spill.push(at),
        }
    }

    pub(super) fn get(&self, index: usize) -> usize {
        let at = match self.inline.get(index) {
            Some(&at) => at,
            None => self.spill.get(index - INLINE_HOLES).copied().unwrap_or(0),
        };
        at as usize
    }

    /// Lets go of spare room in the spilled offsets.
    pub(super) fn shrink_to_fit(&mut self) {
        self.spill.shrink_to_fit();
    }

    pub(super) fn shift_after(&mut self, index: usize, by: usize, count: usize) {
        for later in index + 1..count {
            let at = self.get(later) + by;
            let at = u32::try_from(at).unwrap_or(u32::MAX);
            match self.inline.get_mut(later) {
                Some(slot) => *slot = at,
                None => {
                    if let Some(slot) = self.spill.get_mut(later - INLINE_HOLES) {
                        *slot = at;
                    }
                }
            }
        }
    }
}
