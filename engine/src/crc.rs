//! Combining CRC32Cs of consecutive pieces: the CRC32C of `a ++ b` from
//! `crc(a)`, `crc(b)` and `b`'s length, without reading the bytes again.
//! Writers and readers combine one per 64 KiB chunk to get a block's CRC,
//! so it must cost next to nothing: the shift of `crc(a)` by `len(b)`
//! bytes is a multiplication by x^(8 len(b)) modulo the CRC polynomial,
//! and that factor is computed once per length and kept (as zlib's
//! `crc32_combine_gen`/`crc32_combine_op` do).

/// The CRC32C (Castagnoli) polynomial, bit-reflected.
const POLYNOMIAL: u32 = 0x82f6_3b78;

/// `a * b` modulo the polynomial, both bit-reflected (x^0 is bit 31).
fn multiply(a: u32, mut b: u32) -> u32 {
    let mut product = 0;
    let mut bit = 1u32 << 31;
    while bit != 0 {
        if a & bit != 0 {
            product ^= b;
        }
        b = if b & 1 != 0 {
            (b >> 1) ^ POLYNOMIAL
        } else {
            b >> 1
        };
        bit >>= 1;
    }
    product
}

/// x^(8 length) modulo the polynomial: the factor that shifts a CRC over
/// `length` zero bytes.
fn shift_factor(length: u64) -> u32 {
    // x^(2^k) for k = 3, 4, ...: x^8 first (one byte), squared each step.
    let mut power = 1u32 << 30; // x^1
    for _ in 0..3 {
        power = multiply(power, power);
    }
    let mut factor = 1u32 << 31; // x^0
    let mut remaining = length;
    while remaining != 0 {
        if remaining & 1 != 0 {
            factor = multiply(power, factor);
        }
        power = multiply(power, power);
        remaining >>= 1;
    }
    factor
}

/// The CRC32C of `a ++ b` from `crc(a)`, `crc(b)` and `len(b)`.
pub fn combine(crc_a: u32, crc_b: u32, length_b: u64) -> u32 {
    multiply(shift_factor(length_b), crc_a) ^ crc_b
}

/// Appends pieces' CRCs to a running CRC, fast for pieces of one length
/// (whole chunks): their shift factor is computed once.
#[derive(Clone, Copy, Debug)]
pub struct CrcAppender {
    crc: u32,
    /// The length whose factor is kept, and the factor.
    kept: (u64, u32),
}

impl Default for CrcAppender {
    fn default() -> Self {
        CrcAppender::new()
    }
}

impl CrcAppender {
    pub fn new() -> CrcAppender {
        CrcAppender {
            crc: 0,
            kept: (0, 1u32 << 31),
        }
    }

    /// Appends a piece of `length` bytes whose CRC32C is `piece_crc`.
    pub fn append(&mut self, piece_crc: u32, length: u64) {
        if self.kept.0 != length {
            self.kept = (length, shift_factor(length));
        }
        self.crc = multiply(self.kept.1, self.crc) ^ piece_crc;
    }

    /// The CRC32C of everything appended.
    pub fn crc(&self) -> u32 {
        self.crc
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(seed: u32, length: usize) -> Vec<u8> {
        let mut state = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
        (0..length)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                state as u8
            })
            .collect()
    }

    #[test]
    fn combining_equals_the_crc_of_the_concatenation() {
        for (first, second) in [
            (0, 0),
            (0, 7),
            (5, 0),
            (1, 1),
            (65_536, 65_536),
            (1000, 65_537),
            (3, 200_001),
        ] {
            let a = bytes(1, first);
            let b = bytes(2, second);
            let whole: Vec<u8> = a.iter().chain(&b).copied().collect();
            let expected = crc32c::crc32c(&whole);
            let combined = combine(crc32c::crc32c(&a), crc32c::crc32c(&b), second as u64);
            assert_eq!(combined, expected, "{first} + {second}");
            assert_eq!(
                combined,
                crc32c::crc32c_combine(crc32c::crc32c(&a), crc32c::crc32c(&b), second),
                "the crate agrees for {first} + {second}"
            );
        }
    }

    #[test]
    fn appending_chunks_gives_the_block_crc() {
        let data = bytes(3, 5 * 65_536 + 123);
        let mut appender = CrcAppender::new();
        for chunk in data.chunks(65_536) {
            appender.append(crc32c::crc32c(chunk), chunk.len() as u64);
        }
        assert_eq!(appender.crc(), crc32c::crc32c(&data));
        assert_eq!(CrcAppender::default().crc(), 0);
    }
}
