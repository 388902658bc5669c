//! Fuzzes what a client does with the data authority certificate a master
//! sends in `DataTrust`: any bytes are taken as a trust anchor or refused
//! with an error, never a panic.

#![no_main]

use dfs_engine::tls::DataTrust;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(trust) = DataTrust::new(data) {
        // A trust anchor that parsed still makes sessions.
        assert!(trust.session().is_ok());
    }
});
