//! Fuzzes the identity file parser (a file a user may hand a client) and
//! the principal check the master runs on `AuthenticateClient`: any text is
//! an identity or a reason, never a panic, and a parsed identity's text
//! parses back to it.

#![no_main]

use dfs_engine::identity::{check_principal, Identity};
use dfs_engine::msg::ClientPrincipal;
use dfs_engine::wire::decode_message;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(principal) = decode_message::<ClientPrincipal>(data) {
        let _ = check_principal(&principal);
    }
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(identity) = Identity::parse(text) {
        assert_eq!(Identity::parse(&identity.to_text()), Ok(identity));
    }
});
