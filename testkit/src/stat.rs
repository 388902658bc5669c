//! Parses what `dfs stat PATH` prints: `key: value` lines, then one line per
//! block: `block 0: blk_<16hex> offset=0 length=N replicas=K/R
//! minions=<id>@<addr>,...` with ` (under-replicated)` appended when K < R.

use std::collections::BTreeMap;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatBlock {
    pub index: usize,
    /// As printed: `blk_` and 16 hex digits.
    pub id: String,
    pub offset_bytes: u64,
    pub length_bytes: u64,
    pub replicas: u32,
    pub replication: u32,
    /// `<id>@<addr>` entries.
    pub minions: Vec<String>,
    pub under_replicated: bool,
}

impl StatBlock {
    /// The block id as a number.
    pub fn id_value(&self) -> u64 {
        u64::from_str_radix(&self.id["blk_".len()..], 16).expect("checked when parsed")
    }

    /// The addresses (`host:port`) of the minions holding the block.
    pub fn minion_addresses(&self) -> Vec<&str> {
        self.minions
            .iter()
            .map(|entry| entry.split_once('@').map_or(entry.as_str(), |(_, a)| a))
            .collect()
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stat {
    pub fields: BTreeMap<String, String>,
    pub blocks: Vec<StatBlock>,
}

impl Stat {
    pub fn parse(text: &str) -> Result<Stat, String> {
        let mut fields = BTreeMap::new();
        let mut blocks = Vec::new();
        for line in text.lines() {
            if line.trim().is_empty() {
                continue;
            }
            let is_block_line = line
                .strip_prefix("block ")
                .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit()));
            if is_block_line {
                let block = parse_block(line).map_err(|why| format!("{line:?}: {why}"))?;
                if block.index != blocks.len() {
                    return Err(format!("{line:?}: expected block {}", blocks.len()));
                }
                blocks.push(block);
            } else {
                let (key, value) = line
                    .split_once(':')
                    .ok_or_else(|| format!("{line:?}: not a 'key: value' line"))?;
                fields.insert(key.trim().to_string(), value.trim().to_string());
            }
        }
        for key in ["path", "type", "size", "blocks"] {
            if !fields.contains_key(key) {
                return Err(format!("no '{key}:' line in:\n{text}"));
            }
        }
        Ok(Stat { fields, blocks })
    }

    /// The value of a `key: value` line; panics if there is none.
    pub fn field(&self, key: &str) -> &str {
        self.fields
            .get(key)
            .unwrap_or_else(|| panic!("stat has no '{key}:' line: {:?}", self.fields))
    }

    /// The leading number of a field ("1048576" in "1048576 (1.0 MiB)").
    pub fn number(&self, key: &str) -> u64 {
        let value = self.field(key);
        value
            .split_whitespace()
            .next()
            .and_then(|token| token.parse().ok())
            .unwrap_or_else(|| panic!("stat field '{key}: {value}' does not start with a number"))
    }

    pub fn size_bytes(&self) -> u64 {
        self.number("size")
    }

    /// Asserts the blocks tile the file: contiguous from offset 0, each
    /// `block_bytes` long but the last, `blocks:` matching the block lines.
    pub fn assert_layout(&self, size_bytes: u64, block_bytes: u64) {
        let what = self.field("path");
        assert_eq!(self.size_bytes(), size_bytes, "{what}: size");
        let expected_count = size_bytes.div_ceil(block_bytes);
        assert_eq!(
            self.number("blocks"),
            expected_count,
            "{what}: 'blocks:' line"
        );
        assert_eq!(
            self.blocks.len() as u64,
            expected_count,
            "{what}: block lines"
        );
        let mut offset = 0;
        for block in &self.blocks {
            assert_eq!(block.offset_bytes, offset, "{what}: offset of {}", block.id);
            let expected_length = block_bytes.min(size_bytes - offset);
            assert_eq!(
                block.length_bytes, expected_length,
                "{what}: length of {}",
                block.id
            );
            offset += block.length_bytes;
        }
    }

    /// Asserts every block has all `replication` replicas on distinct minions.
    pub fn assert_fully_replicated(&self, replication: u32) {
        let what = self.field("path");
        for block in &self.blocks {
            assert_eq!(
                (block.replicas, block.replication),
                (replication, replication),
                "{what}: block {} should show replicas={replication}/{replication}",
                block.index
            );
            assert!(
                !block.under_replicated,
                "{what}: block {} is marked under-replicated",
                block.index
            );
            let mut addresses = block.minion_addresses();
            assert_eq!(
                addresses.len() as u32,
                replication,
                "{what}: block {} lists {:?}",
                block.index,
                block.minions
            );
            addresses.sort_unstable();
            addresses.dedup();
            assert_eq!(
                addresses.len() as u32,
                replication,
                "{what}: block {} has replicas on the same minion: {:?}",
                block.index,
                block.minions
            );
        }
    }
}

fn parse_block(line: &str) -> Result<StatBlock, String> {
    let mut tokens = line.split_whitespace();
    let _ = tokens.next(); // "block"
    let index = tokens
        .next()
        .and_then(|t| t.strip_suffix(':'))
        .and_then(|t| t.parse().ok())
        .ok_or("no block index")?;
    let id = tokens.next().ok_or("no block id")?.to_string();
    let hex = id
        .strip_prefix("blk_")
        .ok_or("id does not start with blk_")?;
    if hex.len() != 16 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err("id is not blk_ and 16 hex digits".into());
    }
    let mut values = BTreeMap::new();
    let mut under_replicated = false;
    for token in tokens {
        if token == "(under-replicated)" {
            under_replicated = true;
        } else if let Some((key, value)) = token.split_once('=') {
            values.insert(key, value);
        } else {
            return Err(format!("unexpected {token:?}"));
        }
    }
    let number = |key: &str| -> Result<u64, String> {
        values
            .get(key)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| format!("no number {key}="))
    };
    let (replicas, replication) = values
        .get("replicas")
        .and_then(|v| v.split_once('/'))
        .and_then(|(k, r)| Some((k.parse().ok()?, r.parse().ok()?)))
        .ok_or("no replicas=K/R")?;
    let minions = values
        .get("minions")
        .ok_or("no minions=")?
        .split(',')
        .filter(|entry| !entry.is_empty())
        .map(str::to_string)
        .collect();
    Ok(StatBlock {
        index,
        id,
        offset_bytes: number("offset")?,
        length_bytes: number("length")?,
        replicas,
        replication,
        minions,
        under_replicated,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "path: /a/f
type: file
size: 1048577
replication: 3
block size: 1048576
blocks: 2
owner: root
group: root
mode: 0644
modified: 2026-01-01T00:00:00Z
block 0: blk_00000000000000ff offset=0 length=1048576 replicas=3/3 minions=aa@127.0.0.1:1,bb@127.0.0.1:2,cc@127.0.0.1:3
block 1: blk_0000000000000100 offset=1048576 length=1 replicas=2/3 minions=aa@127.0.0.1:1,bb@127.0.0.1:2 (under-replicated)
";

    #[test]
    fn parses_fields_and_blocks() {
        let stat = Stat::parse(SAMPLE).expect("parse");
        assert_eq!(stat.field("block size"), "1048576");
        assert_eq!(stat.field("modified"), "2026-01-01T00:00:00Z");
        assert_eq!(stat.size_bytes(), 1_048_577);
        assert_eq!(stat.blocks.len(), 2);
        assert_eq!(stat.blocks[0].id_value(), 255);
        assert_eq!(
            stat.blocks[0].minion_addresses(),
            ["127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"]
        );
        assert!(!stat.blocks[0].under_replicated);
        assert_eq!(
            (stat.blocks[1].replicas, stat.blocks[1].replication),
            (2, 3)
        );
        assert!(stat.blocks[1].under_replicated);
        stat.assert_layout(1_048_577, 1 << 20);
    }

    #[test]
    fn refuses_malformed_output() {
        for (text, why) in [
            ("type: file\nsize: 1\nblocks: 0\n", "no 'path:'"),
            (
                "path: /f\ntype: file\nsize: 1\nblocks: 1\nblock 1: blk_0000000000000001 offset=0 length=1 replicas=1/1 minions=a@b\n",
                "expected block 0",
            ),
            (
                "path: /f\ntype: file\nsize: 1\nblocks: 1\nblock 0: blk_01 offset=0 length=1 replicas=1/1 minions=a@b\n",
                "16 hex",
            ),
            (
                "path: /f\ntype: file\nsize: 1\nblocks: 1\nblock 0: blk_0000000000000001 offset=0 length=1 minions=a@b\n",
                "replicas=K/R",
            ),
        ] {
            let error = Stat::parse(text).expect_err(why);
            assert!(error.contains(why), "{error} should contain {why}");
        }
    }
}
