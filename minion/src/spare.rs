//! Spare input buffers of the connections of one core, kept for the next
//! connection or block write. A small file is one connection and one block
//! write on each pipeline member; allocating (and zeroing) a fresh megabyte
//! for each cost more than storing the block. Bounded per length, so a
//! burst of connections leaves at most `SPARE_BUFFERS_PER_LENGTH_MAX`
//! buffers of each length behind per core.

use std::cell::RefCell;

/// Spare buffers kept per buffer length and core.
const SPARE_BUFFERS_PER_LENGTH_MAX: usize = 8;

thread_local! {
    /// (length, buffers of that length), one entry per length seen.
    static SPARES: RefCell<Vec<(usize, Vec<Vec<u8>>)>> = const { RefCell::new(Vec::new()) };
}

/// A buffer of `length_bytes` (initialized: old bytes or zeroes).
pub(crate) fn take(length_bytes: usize) -> Vec<u8> {
    let spare = SPARES.with(|spares| {
        let mut spares = spares.borrow_mut();
        spares
            .iter_mut()
            .find(|(length, _)| *length == length_bytes)
            .and_then(|(_, buffers)| buffers.pop())
    });
    spare.unwrap_or_else(|| vec![0u8; length_bytes])
}

/// Keeps `buffer` for a later `take` of its length, unless enough are kept.
pub(crate) fn give_back(buffer: Vec<u8>) {
    let length_bytes = buffer.len();
    if length_bytes == 0 {
        return;
    }
    SPARES.with(|spares| {
        let mut spares = spares.borrow_mut();
        let index = match spares
            .iter()
            .position(|(length, _)| *length == length_bytes)
        {
            Some(index) => index,
            None => {
                spares.push((length_bytes, Vec::new()));
                spares.len() - 1
            }
        };
        let buffers = &mut spares[index].1;
        if buffers.len() < SPARE_BUFFERS_PER_LENGTH_MAX {
            buffers.push(buffer);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_come_back_by_length_and_the_spares_are_bounded() {
        let first = take(4096);
        assert_eq!(first, vec![0u8; 4096]);
        let address = first.as_ptr();
        give_back(first);
        let again = take(4096);
        assert_eq!(again.as_ptr(), address, "the spare is reused");
        assert_eq!(take(100).len(), 100, "another length gets its own buffer");
        for _ in 0..SPARE_BUFFERS_PER_LENGTH_MAX + 3 {
            give_back(vec![1u8; 64]);
        }
        let kept = SPARES.with(|spares| {
            spares
                .borrow()
                .iter()
                .find(|(length, _)| *length == 64)
                .map(|(_, buffers)| buffers.len())
        });
        assert_eq!(kept, Some(SPARE_BUFFERS_PER_LENGTH_MAX));
        give_back(Vec::new());
        give_back(again);
    }
}
