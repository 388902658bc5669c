//! Deterministic pseudo-random test data (xorshift64*, seeded), written and
//! compared in pieces so multi-MiB files never sit whole in a panic message.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::Path;

/// Bytes moved per step when writing or comparing files.
const PIECE_BYTES: usize = 64 * 1024;

/// An endless-or-bounded stream of pseudo-random bytes: the same seed always
/// gives the same bytes, however the reads are sized.
pub struct RandomReader {
    state: u64,
    word: [u8; 8],
    word_used: usize,
    remaining_bytes: u64,
}

impl RandomReader {
    pub fn new(seed: u64, length_bytes: u64) -> RandomReader {
        // xorshift must not start at zero; mixing keeps nearby seeds apart.
        let state = (seed ^ 0x9e37_79b9_7f4a_7c15).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        RandomReader {
            state: if state == 0 { 1 } else { state },
            word: [0; 8],
            word_used: 8,
            remaining_bytes: length_bytes,
        }
    }

    fn next_word(&mut self) -> [u8; 8] {
        self.state ^= self.state >> 12;
        self.state ^= self.state << 25;
        self.state ^= self.state >> 27;
        self.state.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes()
    }
}

impl Read for RandomReader {
    fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
        let wanted = usize::try_from(self.remaining_bytes)
            .unwrap_or(usize::MAX)
            .min(buffer.len());
        for byte in &mut buffer[..wanted] {
            if self.word_used == 8 {
                self.word = self.next_word();
                self.word_used = 0;
            }
            *byte = self.word[self.word_used];
            self.word_used += 1;
        }
        self.remaining_bytes -= wanted as u64;
        Ok(wanted)
    }
}

/// `length_bytes` pseudo-random bytes from `seed`.
pub fn random_bytes(seed: u64, length_bytes: usize) -> Vec<u8> {
    let mut bytes = vec![0; length_bytes];
    RandomReader::new(seed, length_bytes as u64)
        .read_exact(&mut bytes)
        .expect("random bytes");
    bytes
}

/// Writes `length_bytes` pseudo-random bytes from `seed` to `path`.
pub fn write_random_file(path: &Path, seed: u64, length_bytes: u64) {
    let file = File::create(path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
    let mut writer = BufWriter::with_capacity(PIECE_BYTES, file);
    let copied = std::io::copy(&mut RandomReader::new(seed, length_bytes), &mut writer)
        .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    assert_eq!(copied, length_bytes);
    writer
        .flush()
        .unwrap_or_else(|e| panic!("flush {}: {e}", path.display()));
}

/// Asserts two byte strings are equal; on a difference it names the first
/// differing offset and the lengths instead of printing the bytes.
pub fn assert_bytes_equal(actual: &[u8], expected: &[u8], what: &str) {
    if actual == expected {
        return;
    }
    let first_difference = actual
        .iter()
        .zip(expected)
        .position(|(a, b)| a != b)
        .unwrap_or(actual.len().min(expected.len()));
    panic!(
        "{what}: {} bytes differ from the expected {} bytes, first at offset {first_difference}",
        actual.len(),
        expected.len()
    );
}

/// Asserts the file at `actual` has exactly the bytes `expected` reads out.
pub fn assert_file_matches(actual: &Path, mut expected: impl Read, what: &str) {
    let file =
        File::open(actual).unwrap_or_else(|e| panic!("{what}: open {}: {e}", actual.display()));
    let mut actual_reader = BufReader::new(file);
    let mut offset = 0u64;
    let mut actual_piece = vec![0; PIECE_BYTES];
    let mut expected_piece = vec![0; PIECE_BYTES];
    loop {
        let actual_count = read_full(&mut actual_reader, &mut actual_piece);
        let expected_count = read_full(&mut expected, &mut expected_piece);
        let common = actual_count.min(expected_count);
        if let Some(index) = actual_piece[..common]
            .iter()
            .zip(&expected_piece[..common])
            .position(|(a, b)| a != b)
        {
            panic!(
                "{what}: {} differs from the expected bytes at offset {}",
                actual.display(),
                offset + index as u64
            );
        }
        if actual_count != expected_count {
            panic!(
                "{what}: {} has a different length: one side ends at offset {}",
                actual.display(),
                offset + common as u64
            );
        }
        if actual_count == 0 {
            return;
        }
        offset += actual_count as u64;
    }
}

/// Asserts two files have the same bytes.
pub fn assert_files_equal(actual: &Path, expected: &Path) {
    let file = File::open(expected).unwrap_or_else(|e| panic!("open {}: {e}", expected.display()));
    assert_file_matches(
        actual,
        BufReader::new(file),
        &format!("compare with {}", expected.display()),
    );
}

/// Reads until `buffer` is full or the stream ends; returns the count.
fn read_full(reader: &mut impl Read, buffer: &mut [u8]) -> usize {
    let mut filled = 0;
    while filled < buffer.len() {
        match reader.read(&mut buffer[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => panic!("read while comparing: {e}"),
        }
    }
    filled
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_bytes_whatever_the_read_sizes() {
        let whole = random_bytes(7, 1000);
        let mut reader = RandomReader::new(7, 1000);
        let mut pieced = Vec::new();
        let mut piece = [0u8; 3];
        loop {
            let n = reader.read(&mut piece).expect("read");
            if n == 0 {
                break;
            }
            pieced.extend_from_slice(&piece[..n]);
        }
        assert_eq!(pieced, whole);
        assert_ne!(random_bytes(8, 1000), whole);
        assert_ne!(random_bytes(0, 64), vec![0; 64]);
    }

    #[test]
    fn files_compare_by_content() {
        let dir = tempfile::tempdir().expect("temp dir");
        let a = dir.path().join("a");
        let b = dir.path().join("b");
        write_random_file(&a, 1, 200_000);
        write_random_file(&b, 1, 200_000);
        assert_files_equal(&a, &b);
        let mut expected = random_bytes(1, 200_000);
        assert_file_matches(&a, expected.as_slice(), "same bytes");
        expected[150_000] ^= 1;
        let result = std::panic::catch_unwind(|| {
            assert_file_matches(&a, expected.as_slice(), "one flipped bit")
        });
        let message = result.expect_err("a flipped bit is found");
        let text = message
            .downcast_ref::<String>()
            .expect("panic message is a String");
        assert!(text.contains("offset 150000"), "{text}");
    }
}
