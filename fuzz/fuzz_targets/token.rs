//! Fuzzes the block access token check a minion runs on bytes from any
//! client: any bytes are refused (they were not minted under this key),
//! never a panic, and a minted token still checks after the fuzzer's
//! bytes were tried.

#![no_main]

use std::sync::OnceLock;

use dfs_engine::auth::ClusterKey;
use dfs_engine::msg::{BlockId, Credentials, Generation, MinionAddress, MinionId, ReplicaId};
use dfs_engine::token::TokenKeys;
use libfuzzer_sys::fuzz_target;

const NOW_MS: u64 = 1_800_000_000_000;
const REPLICA: ReplicaId = ReplicaId {
    block: BlockId(7),
    generation: Generation(70),
};

fn keys() -> &'static TokenKeys {
    static KEYS: OnceLock<TokenKeys> = OnceLock::new();
    KEYS.get_or_init(|| TokenKeys::new(ClusterKey::generate().expect("a key")))
}

fuzz_target!(|data: &[u8]| {
    let keys = keys();
    let credentials = Credentials {
        user: "ann".into(),
        groups: Vec::new(),
        token: data.to_vec(),
    };
    assert!(keys.check_read(&credentials, REPLICA, NOW_MS).is_err());
    let downstream = [MinionAddress {
        id: MinionId(2),
        address: "10.0.0.2:7071".into(),
    }];
    assert!(keys
        .check_write(data, &credentials, REPLICA, MinionId(1), &downstream, NOW_MS)
        .is_err());
    let minted = keys.mint_read("ann", REPLICA, NOW_MS);
    let honest = Credentials {
        token: minted,
        ..credentials
    };
    assert!(keys.check_read(&honest, REPLICA, NOW_MS).is_ok());
});
