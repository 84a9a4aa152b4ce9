//! Loss, duplicate and reordering detection for one (publisher, subscriber)
//! stream of sequence numbers.
//!
//! The tracker keeps a bitmap of the numbers seen above `base`, the lowest
//! number not yet seen. In order delivery keeps the bitmap empty; a gap
//! grows it until the gap is filled or the bitmap reaches [`MAX_WORDS`],
//! when the oldest word is given up on (its unseen numbers stay unseen, so
//! a later arrival of one of them is counted as a duplicate: rare, and only
//! after a reordering of more than `MAX_WORDS * 64` messages).

use std::collections::VecDeque;

/// Bound on the bitmap: 4096 words, 262,144 sequence numbers, 32 KiB.
pub const MAX_WORDS: usize = 4096;

/// Sequence bookkeeping for one publisher as seen by one subscriber.
#[derive(Debug, Default, Clone)]
pub struct SeqTracker {
    /// Every number below `base` has been seen (or given up on).
    base: u64,
    /// Bit `i` of word `w` is number `base + 64 * w + i`. The first word
    /// never has its lowest bit set: that would be `base`, seen.
    seen: VecDeque<u64>,
    /// Distinct numbers received.
    pub distinct: u64,
    /// Numbers received more than once.
    pub duplicates: u64,
    /// Numbers received after a higher one.
    pub out_of_order: u64,
    /// Highest number received plus one (0 if none).
    pub high: u64,
}

impl SeqTracker {
    /// Records the arrival of `seq`.
    pub fn record(&mut self, seq: u64) {
        if seq < self.base {
            self.duplicates += 1;
            return;
        }
        let off = seq - self.base;
        let (word, bit) = ((off / 64) as usize, off % 64);
        if word >= MAX_WORDS {
            self.give_up_until(word + 1 - MAX_WORDS);
            return self.record(seq);
        }
        if self.seen.len() <= word {
            self.seen.resize(word + 1, 0);
        }
        if self.seen[word] & (1 << bit) != 0 {
            self.duplicates += 1;
            return;
        }
        self.seen[word] |= 1 << bit;
        self.distinct += 1;
        if seq + 1 < self.high {
            self.out_of_order += 1;
        }
        self.high = self.high.max(seq + 1);
        self.advance();
    }

    /// Moves `base` past the seen numbers at the front of the bitmap.
    fn advance(&mut self) {
        while let Some(&front) = self.seen.front() {
            let run = front.trailing_ones() as u64;
            if run == 64 {
                self.seen.pop_front();
                self.base += 64;
                continue;
            }
            if run > 0 {
                self.shift(run);
            }
            if self.seen.front() == Some(&0) && self.seen.len() == 1 {
                self.seen.clear();
            }
            break;
        }
    }

    /// Drops the first `words` words, unseen numbers included.
    fn give_up_until(&mut self, words: usize) {
        for _ in 0..words.min(self.seen.len()) {
            self.seen.pop_front();
        }
        self.base += 64 * words as u64;
        self.advance();
    }

    /// Shifts the bitmap down by `n` < 64 bits.
    fn shift(&mut self, n: u64) {
        let len = self.seen.len();
        for i in 0..len {
            let next = if i + 1 < len { self.seen[i + 1] } else { 0 };
            self.seen[i] = (self.seen[i] >> n) | (next << (64 - n));
        }
        self.base += n;
        while self.seen.back() == Some(&0) {
            self.seen.pop_back();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_order_keeps_bitmap_empty() {
        let mut t = SeqTracker::default();
        for s in 0..10_000 {
            t.record(s);
        }
        assert_eq!((t.distinct, t.duplicates, t.out_of_order), (10_000, 0, 0));
        assert!(t.seen.is_empty());
        assert_eq!((10_000 - t.distinct), 0);
    }

    #[test]
    fn gaps_duplicates_and_reordering() {
        let mut t = SeqTracker::default();
        for s in (0..1000).filter(|s| s % 10 != 3) {
            t.record(s);
        }
        assert_eq!((1000 - t.distinct), 100);
        t.record(13);
        assert_eq!((t.out_of_order, (1000 - t.distinct)), (1, 99));
        t.record(13);
        t.record(999);
        t.record(0);
        assert_eq!(t.duplicates, 3);
        for s in (0..1000).filter(|s| s % 10 == 3) {
            t.record(s);
        }
        assert_eq!(((1000 - t.distinct), t.duplicates), (0, 4));
        assert!(t.seen.is_empty());
    }

    #[test]
    fn bitmap_is_bounded() {
        let mut t = SeqTracker::default();
        for s in 1..(MAX_WORDS as u64 * 64 * 3) {
            t.record(s);
        }
        assert!(t.seen.len() <= MAX_WORDS);
        assert_eq!((MAX_WORDS as u64 * 64 * 3 - t.distinct), 1);
        t.record(0);
        assert_eq!(t.duplicates, 1);
    }
}
