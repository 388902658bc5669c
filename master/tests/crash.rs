//! Acknowledged changes survive crashes, and nothing unacknowledged shows
//! half-applied. Round after round, a real `dfs-master` serves several
//! client threads doing mkdir, file creates (with blocks), renames and
//! deletes over raw protocol calls, each in its own directory and each
//! keeping a model of what the master acknowledged; the master dies by
//! `kill -9` at a random moment, or by a failpoint inside checkpointing,
//! segment rolling or appending (with tiny checkpoint thresholds and
//! segments, so those paths run all the time). After each restart every
//! directory must equal its model, or its model plus the one change that was
//! in flight, applied whole.

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use dfs_engine::msg::{MasterRequest, MasterResponse, MinionId};
use support::{call, list, CallError, Entry, Master, MasterDir};

const WORKERS: usize = 4;
const BLOCK_BYTES: u64 = 1024;
/// Small segments and checkpoints, so rolls and checkpoints happen every round.
const ARGS: [&str; 4] = [
    "--journal-segment-size",
    "256K",
    "--checkpoint-after",
    "16K",
];
/// Long names make records larger, so segments fill in a round or two.
const NAME_PADDING: &str = "-padded-so-that-journal-records-are-a-few-hundred-bytes-long-which-fills-small-segments-quickly-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx";

#[derive(Clone, Debug)]
enum Change {
    Mkdir(String),
    Create {
        name: String,
        block_lengths: Vec<u64>,
    },
    Rename {
        source: String,
        target: String,
    },
    Delete(String),
}

fn apply(model: &mut BTreeMap<String, Entry>, change: &Change) {
    match change {
        Change::Mkdir(name) => {
            model.insert(name.clone(), Entry::Directory);
        }
        Change::Create {
            name,
            block_lengths,
        } => {
            model.insert(
                name.clone(),
                Entry::File {
                    size_bytes: block_lengths.iter().sum(),
                    block_count: block_lengths.len() as u64,
                },
            );
        }
        Change::Rename { source, target } => {
            if let Some(entry) = model.remove(source) {
                model.insert(target.clone(), entry);
            }
        }
        Change::Delete(name) => {
            model.remove(name);
        }
    }
}

struct Worker {
    directory: String,
    model: BTreeMap<String, Entry>,
    next_name: u64,
    random: u64,
}

impl Worker {
    fn random(&mut self) -> u64 {
        self.random ^= self.random << 13;
        self.random ^= self.random >> 7;
        self.random ^= self.random << 17;
        self.random
    }

    fn new_name(&mut self, kind: &str) -> String {
        self.next_name += 1;
        format!("{kind}{}{NAME_PADDING}", self.next_name)
    }

    fn existing(&mut self) -> Option<String> {
        if self.model.is_empty() {
            return None;
        }
        let index = self.random() as usize % self.model.len();
        self.model.keys().nth(index).cloned()
    }

    fn choose(&mut self) -> Change {
        let pick = self.random() % 10;
        if pick < 3 {
            return Change::Mkdir(self.new_name("d"));
        }
        if pick < 7 || self.model.len() < 3 {
            let blocks = self.random() % 3;
            let mut block_lengths = vec![BLOCK_BYTES; blocks as usize];
            if let Some(last) = block_lengths.last_mut() {
                *last = 1 + self.random() % BLOCK_BYTES;
            }
            return Change::Create {
                name: self.new_name("f"),
                block_lengths,
            };
        }
        let existing = self.existing().unwrap_or_default();
        if pick < 9 {
            Change::Rename {
                source: existing,
                target: self.new_name("r"),
            }
        } else {
            Change::Delete(existing)
        }
    }

    fn path(&self, name: &str) -> String {
        format!("{}/{name}", self.directory)
    }

    /// Does changes until the master goes away or `deadline`; returns the
    /// change in flight when the connection broke, if its outcome is unknown.
    fn run(&mut self, address: &str, minion: MinionId, deadline: Instant) -> Option<Change> {
        let Ok(mut connection) = dfs_engine::rpc::Connection::open(address) else {
            return None;
        };
        while Instant::now() < deadline {
            let change = self.choose();
            match self.perform(&mut connection, &change, minion) {
                Ok(()) => apply(&mut self.model, &change),
                Err((CallError::Connection(_), visible)) => {
                    return visible.then_some(change);
                }
                Err((CallError::Remote(error), _)) => {
                    panic!("{change:?} refused: {error}")
                }
            }
        }
        None
    }

    /// Err carries whether the broken request could have made the change
    /// visible (only the last request of a change can).
    fn perform(
        &self,
        connection: &mut dfs_engine::rpc::Connection,
        change: &Change,
        minion: MinionId,
    ) -> Result<(), (CallError, bool)> {
        let expect_ok = |response: MasterResponse| {
            assert_eq!(response, MasterResponse::Ok, "{change:?}");
        };
        match change {
            Change::Mkdir(name) => {
                let request = MasterRequest::Mkdir {
                    path: self.path(name),
                    parents: false,
                    mode: 0o755,
                };
                expect_ok(call(connection, request).map_err(|e| (e, true))?);
            }
            Change::Rename { source, target } => {
                let request = MasterRequest::Rename {
                    source: self.path(source),
                    target: self.path(target),
                };
                expect_ok(call(connection, request).map_err(|e| (e, true))?);
            }
            Change::Delete(name) => {
                let request = MasterRequest::Delete {
                    path: self.path(name),
                    recursive: true,
                };
                expect_ok(call(connection, request).map_err(|e| (e, true))?);
            }
            Change::Create {
                name,
                block_lengths,
            } => {
                let opened = call(
                    connection,
                    MasterRequest::OpenWrite {
                        path: self.path(name),
                        replication: Some(1),
                        block_bytes: Some(BLOCK_BYTES),
                        overwrite: false,
                        mode: 0o644,
                        allocate_first_block: false,
                    },
                )
                .map_err(|e| (e, false))?;
                let MasterResponse::WriteOpened { write, .. } = opened else {
                    panic!("OpenWrite answered {opened:?}");
                };
                for &length_bytes in block_lengths {
                    let allocated = call(
                        connection,
                        MasterRequest::AllocateBlock {
                            write,
                            excluded: Vec::new(),
                        },
                    )
                    .map_err(|e| (e, false))?;
                    let MasterResponse::BlockAllocated {
                        block, generation, ..
                    } = allocated
                    else {
                        panic!("AllocateBlock answered {allocated:?}");
                    };
                    let committed = call(
                        connection,
                        MasterRequest::CommitBlock {
                            write,
                            block,
                            generation,
                            length_bytes,
                            replicas: vec![minion],
                            crc32c: 0,
                        },
                    )
                    .map_err(|e| (e, false))?;
                    expect_ok(committed);
                }
                let closed = call(
                    connection,
                    MasterRequest::CloseWrite {
                        write,
                        last_block: None,
                        modified_ns: None,
                    },
                )
                .map_err(|e| (e, true))?;
                assert!(
                    matches!(closed, MasterResponse::Closed { .. }),
                    "{change:?}: {closed:?}"
                );
            }
        }
        Ok(())
    }

    /// Checks the restarted master against the model; adopts the in-flight
    /// change if it landed.
    fn verify(&mut self, master: &Master, uncertain: Option<Change>, round: &str) {
        let actual = list(&mut master.connect(), &self.directory);
        if actual == self.model {
            return;
        }
        if let Some(change) = &uncertain {
            let mut with_change = self.model.clone();
            apply(&mut with_change, change);
            if actual == with_change {
                self.model = with_change;
                return;
            }
        }
        let missing: Vec<_> = self
            .model
            .iter()
            .filter(|(name, entry)| actual.get(*name) != Some(entry))
            .collect();
        let extra: Vec<_> = actual
            .iter()
            .filter(|(name, entry)| self.model.get(*name) != Some(entry))
            .collect();
        panic!(
            "{round}: {} differs from what was acknowledged\nmissing or different: {missing:?}\nunexpected: {extra:?}\nin flight: {uncertain:?}",
            self.directory
        );
    }
}

struct Scenario {
    dir: MasterDir,
    workers: Vec<Worker>,
    minion: MinionId,
    random: u64,
}

impl Scenario {
    fn new(seed: u64) -> (Scenario, Master) {
        let dir = MasterDir::new();
        let master = dir.start(&ARGS, None);
        let mut connection = master.connect();
        let workers = (0..WORKERS)
            .map(|index| {
                let directory = format!("/w{index}");
                let made = call(
                    &mut connection,
                    MasterRequest::Mkdir {
                        path: directory.clone(),
                        parents: false,
                        mode: 0o755,
                    },
                );
                assert!(matches!(made, Ok(MasterResponse::Ok)), "{made:?}");
                Worker {
                    directory,
                    model: BTreeMap::new(),
                    next_name: 0,
                    random: seed.wrapping_mul(31).wrapping_add(index as u64 + 1) | 1,
                }
            })
            .collect();
        let scenario = Scenario {
            dir,
            workers,
            minion: MinionId(0x5eed),
            random: seed | 1,
        };
        (scenario, master)
    }

    fn random(&mut self) -> u64 {
        self.random ^= self.random << 13;
        self.random ^= self.random >> 7;
        self.random ^= self.random << 17;
        self.random
    }

    /// Runs the workers against `master` until `end_round` returns (it ends
    /// the master), restarts it and verifies every directory.
    fn round(
        &mut self,
        master: Master,
        failpoint_name: &str,
        end_round: impl FnOnce(Master),
    ) -> Master {
        master.register_paper_minion(self.minion);
        let address = master.address.clone();
        let minion = self.minion;
        let deadline = Instant::now() + Duration::from_secs(8);
        let uncertain: Vec<Option<Change>> = std::thread::scope(|scope| {
            let handles: Vec<_> = self
                .workers
                .iter_mut()
                .map(|worker| {
                    let address = address.clone();
                    scope.spawn(move || worker.run(&address, minion, deadline))
                })
                .collect();
            end_round(master);
            handles
                .into_iter()
                .map(|h| h.join().expect("worker thread"))
                .collect()
        });
        let restarted = self.dir.start(&ARGS, None);
        let in_flight = uncertain.iter().filter(|u| u.is_some()).count();
        let entries: usize = self.workers.iter().map(|w| w.model.len()).sum();
        eprintln!("{failpoint_name}: {entries} entries acknowledged so far, {in_flight} changes in flight");
        for (worker, uncertain) in self.workers.iter_mut().zip(uncertain) {
            worker.verify(&restarted, uncertain, failpoint_name);
        }
        restarted
    }

    fn finish(self, master: Master) {
        // A graceful stop checkpoints everything; the next start and the
        // offline check agree.
        master.stop();
        let mut restarted = self.dir.start(&ARGS, None);
        let workers = self.workers;
        for mut worker in workers {
            worker.verify(&restarted, None, "after a graceful stop");
        }
        assert!(!restarted.has_exited());
        restarted.kill();
        let check = self.dir.run(&["--check"]);
        let report = String::from_utf8_lossy(&check.stdout);
        assert!(check.status.success(), "--check failed:\n{report}");
        assert!(report.contains("OK"), "{report}");
        self.dir.assert_clean_log(&[]);
    }
}

#[test]
fn acknowledged_changes_survive_kill_9_at_random_moments() {
    let (mut scenario, mut master) = Scenario::new(0xc0ffee);
    for round in 0..25 {
        let delay_ms = 20 + scenario.random() % 250;
        master = scenario.round(master, &format!("kill round {round}"), |master| {
            std::thread::sleep(Duration::from_millis(delay_ms));
            master.kill();
        });
    }
    let text = scenario.dir.log_text();
    assert!(
        text.contains("background checkpoint written"),
        "no background checkpoint ran:\n{}",
        support::tail(&text)
    );
    scenario.finish(master);
}

#[test]
fn a_crash_anywhere_in_checkpointing_or_appending_leaves_a_loadable_state() {
    let failpoints = [
        "checkpoint-temp-created",
        "checkpoint-before-sync",
        "checkpoint-before-rename",
        "checkpoint-after-rename",
        "checkpoint-after-directory-sync",
        "checkpoint-removed-old",
        "checkpoint-removed-segment",
        "journal-before-roll",
        "journal-segment-renamed",
        "journal-mid-append",
        "journal-before-flush",
    ];
    let (mut scenario, mut master) = Scenario::new(0xfa11);
    let mut fired = Vec::new();
    for (index, failpoint) in failpoints.iter().enumerate() {
        // The first rounds hit a point at once; later ones after a while.
        let hits = 1 + scenario.random() % 3;
        let armed = format!("{failpoint}@{hits}");
        master.kill();
        let restarted = scenario.dir.start(&ARGS, Some(&armed));
        master = scenario.round(restarted, &armed, |mut master| {
            let deadline = Instant::now() + Duration::from_secs(4);
            while !master.has_exited() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            if master.has_exited() {
                fired.push(index);
            }
            master.kill();
        });
    }
    let text = scenario.dir.log_text();
    eprintln!("failpoints that fired: {fired:?}");
    // Some points need a segment to fill; most must fire in their round.
    assert!(
        fired.len() >= failpoints.len() - 3,
        "only {fired:?} of the failpoints fired"
    );
    // A crash during a graceful stop's checkpoint is a crash too.
    master.kill();
    let stopping = scenario.dir.start(&ARGS, Some("checkpoint-before-rename"));
    master = scenario.round(stopping, "stop with checkpoint-before-rename", |master| {
        std::thread::sleep(Duration::from_millis(100));
        let mut master = master;
        master.guard.signal(dfs_testkit::Signal::Terminate);
        let status = master.guard.wait_exit(dfs_testkit::EXIT_TIMEOUT);
        // Killed by the failpoint, or done before any checkpoint was due.
        assert!(!status.success() || status.code() == Some(0), "{status}");
    });
    assert!(text.contains("failpoint") || !fired.is_empty());
    scenario.finish(master);
}
