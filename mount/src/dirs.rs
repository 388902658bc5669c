//! An open directory, read a page of the master's listing at a time: the
//! kernel's `readdir` offsets are positions in the listing (1 is ".", 2 is
//! "..", entries follow), and only the current page is held, so reading a
//! directory of millions of entries takes one page of memory. A seek back
//! before the page starts the listing again from its first page.

use dfs_engine::msg::EntryStatus;
use fuser::FileType;

/// One entry as `readdir` gives it: inode number, type, name, and the
/// entry's status as the listing had it (for `readdirplus`; none for "."
/// and "..").
pub type DirEntry = (u64, FileType, String, Option<Box<EntryStatus>>);

/// Where the next page comes from: the entries after a name (from the
/// first without), and whether more follow.
pub trait PageSource {
    fn page(&mut self, after: Option<&str>) -> dfs_engine::Result<(Vec<DirEntry>, bool)>;
}

pub struct Listing {
    /// "." and "..".
    dots: [DirEntry; 2],
    /// The page held: entries from position `base` on (0 is the first
    /// entry after the dots).
    page: Vec<DirEntry>,
    base: u64,
    /// Whether pages follow the one held, and the name it ends with.
    more: bool,
    started: bool,
}

impl Listing {
    pub fn new(inode: u64, parent: u64) -> Listing {
        Listing {
            dots: [
                (inode, FileType::Directory, ".".to_string(), None),
                (parent, FileType::Directory, "..".to_string(), None),
            ],
            page: Vec::new(),
            base: 0,
            more: true,
            started: false,
        }
    }

    /// Calls `add(offset of the next entry, entry)` for each entry from
    /// `offset` on, until it answers true (the kernel's buffer is full) or
    /// the listing ends.
    pub fn fill(
        &mut self,
        source: &mut dyn PageSource,
        offset: u64,
        mut add: impl FnMut(u64, &DirEntry) -> bool,
    ) -> dfs_engine::Result<()> {
        let mut position = offset;
        while position < 2 {
            if add(position + 1, &self.dots[position as usize]) {
                return Ok(());
            }
            position += 1;
        }
        let mut index = position - 2;
        if index < self.base || !self.started {
            // Back before the page held (or not started): from the top.
            self.page.clear();
            self.base = 0;
            self.more = true;
            self.started = true;
            let (page, more) = source.page(None)?;
            self.page = page;
            self.more = more;
        }
        loop {
            while let Some(entry) = usize::try_from(index - self.base)
                .ok()
                .and_then(|at| self.page.get(at))
            {
                if add(index + 3, entry) {
                    return Ok(());
                }
                index += 1;
            }
            if !self.more {
                return Ok(());
            }
            let after = self.page.last().map(|(_, _, name, _)| name.clone());
            let Some(after) = after else {
                return Ok(());
            };
            let (page, more) = source.page(Some(&after))?;
            self.base += self.page.len() as u64;
            self.page = page;
            self.more = more;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Names "e000".."e{count}" in pages of `per_page`, counting fetches.
    struct Pages {
        names: Vec<String>,
        per_page: usize,
        fetched: usize,
    }

    impl PageSource for Pages {
        fn page(&mut self, after: Option<&str>) -> dfs_engine::Result<(Vec<DirEntry>, bool)> {
            self.fetched += 1;
            let start = match after {
                Some(after) => self
                    .names
                    .iter()
                    .position(|n| n.as_str() > after)
                    .unwrap_or(self.names.len()),
                None => 0,
            };
            let end = (start + self.per_page).min(self.names.len());
            let page = self.names[start..end]
                .iter()
                .enumerate()
                .map(|(i, name)| {
                    (
                        (start + i) as u64 + 100,
                        FileType::RegularFile,
                        name.clone(),
                        None,
                    )
                })
                .collect();
            Ok((page, end < self.names.len()))
        }
    }

    fn pages(count: usize, per_page: usize) -> Pages {
        Pages {
            names: (0..count).map(|i| format!("e{i:03}")).collect(),
            per_page,
            fetched: 0,
        }
    }

    /// Reads the whole directory `at_once` entries per readdir call.
    fn read_all(listing: &mut Listing, source: &mut Pages, at_once: usize) -> Vec<String> {
        let mut names = Vec::new();
        let mut offset = 0;
        loop {
            let mut got = 0;
            listing
                .fill(source, offset, |next, (_, _, name, _)| {
                    names.push(name.clone());
                    offset = next;
                    got += 1;
                    got == at_once
                })
                .expect("fill");
            if got < at_once {
                return names;
            }
        }
    }

    #[test]
    fn a_directory_is_read_whole_a_page_at_a_time() {
        for (count, per_page, at_once) in
            [(0, 4, 3), (10, 4, 3), (10, 4, 4), (10, 10, 100), (9, 3, 1)]
        {
            let mut source = pages(count, per_page);
            let mut listing = Listing::new(5, 1);
            let names = read_all(&mut listing, &mut source, at_once);
            let mut expected = vec![".".to_string(), "..".to_string()];
            expected.extend(source.names.iter().cloned());
            assert_eq!(
                names, expected,
                "{count} entries, pages of {per_page}, {at_once} at once"
            );
            assert!(
                source.fetched <= count / per_page + 2,
                "{} fetches for {count} entries in pages of {per_page}",
                source.fetched
            );
            assert!(listing.page.len() <= per_page, "one page held");
        }
    }

    #[test]
    fn a_seek_back_starts_again_from_the_top() {
        let mut source = pages(10, 3);
        let mut listing = Listing::new(5, 1);
        read_all(&mut listing, &mut source, 100);
        let mut again = Vec::new();
        listing
            .fill(&mut source, 4, |_, (_, _, name, _)| {
                again.push(name.clone());
                again.len() == 2
            })
            .expect("fill");
        assert_eq!(again, ["e002", "e003"]);
    }
}
