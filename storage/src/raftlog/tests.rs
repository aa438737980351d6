//! Raft log: append, read back, reopen, torn tails, damaged frames, truncation,
//! purge and the persisted state, across segment boundaries.

use std::fs::OpenOptions;

use super::*;

/// Small segments, so a few entries span several files.
const SMALL: RaftLogOptions = RaftLogOptions { segment_bytes: 200 };

fn entry(term: u64, index: u64) -> Entry {
    Entry {
        id: LogId {
            term,
            node: 1,
            index,
        },
        body: EntryBody::Data {
            stamp: (term, 1),
            payloads: vec![format!("batch {index}").into_bytes(), vec![index as u8; 40]],
        },
    }
}

fn entries(term: u64, indexes: std::ops::Range<u64>) -> Vec<Entry> {
    indexes.map(|i| entry(term, i)).collect()
}

fn segment_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".log"))
        .collect();
    names.sort();
    names
}

/// Append one entry per call: each append may start a segment.
fn append_each(log: &mut RaftLog, entries: &[Entry]) {
    for e in entries {
        log.append(std::slice::from_ref(e)).unwrap();
    }
}

fn all(log: &RaftLog) -> Vec<Entry> {
    log.entries(0, u64::MAX).unwrap()
}

#[test]
fn appended_entries_read_back_across_segments_and_after_reopen() {
    let d = tempfile::tempdir().unwrap();
    let mut log = RaftLog::open(d.path(), SMALL).unwrap();
    assert_eq!(log.last_log_id(), None);
    let want = entries(1, 0..10);
    log.append(&want[..3]).unwrap();
    append_each(&mut log, &want[3..]);
    assert!(segment_files(d.path()).len() > 2, "small segments roll");
    assert_eq!(all(&log), want);
    assert_eq!(log.entries(4, 7).unwrap(), want[4..7].to_vec());
    assert_eq!(log.last_log_id(), Some(want[9].id));
    drop(log);
    let log = RaftLog::open(d.path(), SMALL).unwrap();
    assert_eq!(all(&log), want);
    assert_eq!(log.first_index(), Some(0));
    assert_eq!(log.log_id(5), Some(want[5].id));
}

#[test]
fn appends_that_leave_a_gap_or_overlap_are_refused() {
    let d = tempfile::tempdir().unwrap();
    let mut log = RaftLog::open(d.path(), SMALL).unwrap();
    log.append(&entries(1, 5..8)).unwrap();
    assert!(log.append(&entries(1, 9..10)).is_err(), "gap");
    assert!(log.append(&entries(1, 7..8)).is_err(), "overlap");
    let mut not_consecutive = entries(1, 8..9);
    not_consecutive.push(entry(1, 10));
    assert!(log.append(&not_consecutive).is_err());
    log.append(&entries(1, 8..9)).unwrap();
    assert_eq!(log.last_log_id().map(|l| l.index), Some(8));
}

#[test]
fn a_torn_tail_is_cut_off_at_open_and_appends_continue_after_it() {
    let d = tempfile::tempdir().unwrap();
    let mut log = RaftLog::open(d.path(), RaftLogOptions::default()).unwrap();
    log.append(&entries(1, 1..4)).unwrap();
    drop(log);
    let seg = d.path().join(segment_files(d.path())[0].clone());
    let len = std::fs::metadata(&seg).unwrap().len();
    OpenOptions::new()
        .write(true)
        .open(&seg)
        .unwrap()
        .set_len(len - 5)
        .unwrap();
    let mut log = RaftLog::open(d.path(), RaftLogOptions::default()).unwrap();
    assert_eq!(all(&log), entries(1, 1..3), "the torn entry is gone");
    assert!(
        std::fs::metadata(&seg).unwrap().len() < len - 5,
        "cut on disk"
    );
    log.append(&entries(2, 3..5)).unwrap();
    drop(log);
    let log = RaftLog::open(d.path(), RaftLogOptions::default()).unwrap();
    let mut want = entries(1, 1..3);
    want.extend(entries(2, 3..5));
    assert_eq!(all(&log), want);
}

#[test]
fn a_newest_segment_without_its_whole_header_is_removed() {
    let d = tempfile::tempdir().unwrap();
    let mut log = RaftLog::open(d.path(), SMALL).unwrap();
    log.append(&entries(1, 1..3)).unwrap();
    drop(log);
    std::fs::write(d.path().join("000999.log"), b"HSIG").unwrap();
    let mut log = RaftLog::open(d.path(), SMALL).unwrap();
    assert!(!d.path().join("000999.log").exists());
    assert_eq!(all(&log), entries(1, 1..3));
    log.append(&entries(1, 3..4)).unwrap();
}

#[test]
fn a_damaged_frame_before_the_tail_refuses_to_open() {
    let d = tempfile::tempdir().unwrap();
    let mut log = RaftLog::open(d.path(), SMALL).unwrap();
    append_each(&mut log, &entries(1, 0..10));
    drop(log);
    let first = d.path().join(segment_files(d.path())[0].clone());
    let mut bytes = std::fs::read(&first).unwrap();
    let at = WAL_HEADER_LEN + FRAME_HEADER_LEN + 3;
    bytes[at] ^= 0x40;
    std::fs::write(&first, bytes).unwrap();
    let err = RaftLog::open(d.path(), SMALL).unwrap_err();
    assert!(err.is_corruption(), "{err}");
}

#[test]
fn a_damaged_frame_found_by_a_read_is_corruption() {
    let d = tempfile::tempdir().unwrap();
    let mut log = RaftLog::open(d.path(), RaftLogOptions::default()).unwrap();
    log.append(&entries(1, 0..3)).unwrap();
    let seg = d.path().join(segment_files(d.path())[0].clone());
    let mut bytes = std::fs::read(&seg).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&seg, bytes).unwrap();
    assert!(log.entries(2, 3).unwrap_err().is_corruption());
    assert_eq!(log.entries(0, 2).unwrap(), entries(1, 0..2));
}

#[test]
fn truncate_removes_the_suffix_across_segments_durably() {
    let d = tempfile::tempdir().unwrap();
    let mut log = RaftLog::open(d.path(), SMALL).unwrap();
    append_each(&mut log, &entries(1, 0..12));
    let before = segment_files(d.path()).len();
    log.truncate(4).unwrap();
    assert!(
        segment_files(d.path()).len() < before,
        "later segments deleted"
    );
    assert_eq!(all(&log), entries(1, 0..4));
    log.append(&entries(2, 4..6)).unwrap();
    log.truncate(100).unwrap();
    drop(log);
    let mut log = RaftLog::open(d.path(), SMALL).unwrap();
    let mut want = entries(1, 0..4);
    want.extend(entries(2, 4..6));
    assert_eq!(all(&log), want);
    log.truncate(0).unwrap();
    assert_eq!(all(&log), Vec::new());
    log.append(&entries(3, 0..2)).unwrap();
    assert_eq!(all(&log), entries(3, 0..2));
}

#[test]
fn purge_deletes_whole_segments_and_the_log_continues_after_the_purged_id() {
    let d = tempfile::tempdir().unwrap();
    let mut log = RaftLog::open(d.path(), SMALL).unwrap();
    append_each(&mut log, &entries(1, 1..13));
    let before = segment_files(d.path());
    let upto = log.log_id(7).unwrap();
    log.purge(upto).unwrap();
    assert!(segment_files(d.path()).len() < before.len());
    assert_eq!(log.first_index(), Some(8));
    assert_eq!(all(&log), entries(1, 8..13));
    assert!(
        log.truncate(5).is_err(),
        "purged entries cannot be truncated"
    );
    drop(log);
    let mut log = RaftLog::open(d.path(), SMALL).unwrap();
    assert_eq!(log.state().purged, Some(upto));
    assert_eq!(all(&log), entries(1, 8..13));
    // Purge past the end (a snapshot newer than the log): the log is empty and
    // continues after the snapshot.
    let ahead = LogId {
        term: 4,
        node: 2,
        index: 40,
    };
    log.purge(ahead).unwrap();
    assert_eq!(segment_files(d.path()), Vec::<String>::new());
    assert_eq!(log.last_log_id(), Some(ahead));
    assert!(log.append(&entries(4, 40..41)).is_err());
    log.append(&entries(4, 41..43)).unwrap();
    drop(log);
    let log = RaftLog::open(d.path(), SMALL).unwrap();
    assert_eq!(all(&log), entries(4, 41..43));
}

#[test]
fn segments_left_by_a_crash_inside_purge_are_removed_at_open() {
    let d = tempfile::tempdir().unwrap();
    let mut log = RaftLog::open(d.path(), SMALL).unwrap();
    append_each(&mut log, &entries(1, 1..13));
    let files = segment_files(d.path());
    // The purged id became durable; the process died before deleting anything.
    let mut state = log.state();
    state.purged = log.log_id(9);
    state.save(d.path()).unwrap();
    drop(log);
    let log = RaftLog::open(d.path(), SMALL).unwrap();
    assert_eq!(log.first_index(), Some(10));
    assert!(segment_files(d.path()).len() < files.len());
    assert_eq!(all(&log), entries(1, 10..13));
}

#[test]
fn vote_and_committed_id_survive_reopen() {
    let d = tempfile::tempdir().unwrap();
    let mut log = RaftLog::open(d.path(), SMALL).unwrap();
    let vote = Vote {
        term: 5,
        node: 3,
        committed: false,
    };
    log.save_vote(vote).unwrap();
    log.append(&entries(5, 0..2)).unwrap();
    let committed = log.log_id(1);
    log.save_committed(committed).unwrap();
    drop(log);
    let log = RaftLog::open(d.path(), SMALL).unwrap();
    assert_eq!(log.state().vote, Some(vote));
    assert_eq!(log.state().committed, committed);
}

#[test]
fn a_gap_between_segments_on_disk_is_corruption() {
    let d = tempfile::tempdir().unwrap();
    let mut log = RaftLog::open(d.path(), SMALL).unwrap();
    append_each(&mut log, &entries(1, 0..12));
    drop(log);
    let files = segment_files(d.path());
    assert!(files.len() >= 3);
    std::fs::remove_file(d.path().join(&files[1])).unwrap();
    assert!(RaftLog::open(d.path(), SMALL).unwrap_err().is_corruption());
}

#[test]
fn purge_point_keeps_the_requested_bytes_and_never_passes_the_snapshot() {
    let d = tempfile::tempdir().unwrap();
    let mut log = RaftLog::open(d.path(), SMALL).unwrap();
    append_each(&mut log, &entries(1, 1..21));
    let size = |i: u64| log.loc(i).map(|l| l.frame_end() - l.offset).unwrap();
    // Keeping nothing: purge up to the snapshot.
    assert_eq!(log.purge_point(12, 0), Some(12));
    // Keeping three entries' bytes: entries 18..=20 stay.
    let three = size(18) + size(19) + size(20);
    assert_eq!(log.purge_point(20, three), Some(17));
    assert_eq!(log.purge_point(20, three + 1), Some(16));
    // The snapshot bounds it; more than the log holds keeps everything.
    assert_eq!(log.purge_point(5, three), Some(5));
    assert_eq!(log.purge_point(20, u64::MAX), None);
    log.purge(log.log_id(10).unwrap()).unwrap();
    assert_eq!(log.purge_point(9, 0), None, "already purged");
    assert_eq!(log.purge_point(20, three), Some(17));
}
