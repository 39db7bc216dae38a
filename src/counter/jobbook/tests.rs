//! Unit tests of [`super`] (moved out of its file unchanged).

use super::*;

fn ids(n: u8) -> RequestIds {
    RequestIds {
        authorize: [n; 16],
        commit: [n.wrapping_add(100); 16],
        void: [n.wrapping_add(200); 16],
    }
}

/// Decides and applies, as the shell does after its journal append.
macro_rules! step {
        ($book:expr, $method:ident($($arg:expr),* $(,)?) $(,)?) => {{
            let recs = $book.$method($($arg),*).expect("accepted");
            for rec in &recs {
                $book.apply(rec);
            }
            recs
        }};
    }

fn authorized(book: &mut JobBook, n: u8) -> JobKey {
    let k = [n; 16];
    step!(book, decide_authorize(k, 129, ids(n), "a0".into()));
    step!(book, decide_authorized(k, Ok((u64::from(n), "ab".into()))));
    k
}

fn settlement_of(book: &JobBook, k: JobKey) -> Settlement {
    match book.get(&k).map(|e| e.stage) {
        Some(Stage::Settling(s)) => s,
        other => panic!("not settling: {other:?}"),
    }
}

#[test]
fn a_whole_print_commits_once_with_the_commit_id() {
    let mut b = JobBook::default();
    let k = authorized(&mut b, 1);
    step!(b, decide_print(k, 1));
    assert_eq!(b.decide_print(k, 1), Err(Refusal::AlreadyPrinted));
    for m in [
        Milestone::IndiciumSending,
        Milestone::IndiciumSent,
        Milestone::IndiciumPrinted,
        Milestone::EndPrinted,
    ] {
        step!(b, decide_milestone(k, m));
    }
    step!(b, decide_ended(k, PaperVerdict::Printed, true));
    assert_eq!(settlement_of(&b, k), Settlement::Commit);
    assert_eq!(
        b.sends(),
        vec![Send::Settle {
            job: k,
            settlement: Settlement::Commit,
            request_id: ids(1).commit,
            piece_serial: 1
        }]
    );
    step!(
        b,
        decide_settled(
            k,
            Answer::Ok {
                result: "committed".into(),
            },
        ),
    );
    assert!(b.sends().is_empty());
    assert_eq!(b.open_count(), 0);
    assert_eq!(b.decide_print(k, 1), Err(Refusal::AlreadyPrinted));
}

#[test]
fn the_paper_decides_the_settlement() {
    let cases = [
        (PaperVerdict::NotOnPaper, false, Settlement::Void),
        (PaperVerdict::NotOnPaper, true, Settlement::Void),
        (
            PaperVerdict::AssumedPrinted,
            false,
            Settlement::VoidReachedPrinter,
        ),
        (PaperVerdict::Printed, false, Settlement::VoidReachedPrinter),
        (PaperVerdict::Printed, true, Settlement::Commit),
    ];
    for (i, (paper, complete, want)) in cases.into_iter().enumerate() {
        let mut b = JobBook::default();
        let k = authorized(&mut b, i as u8 + 1);
        step!(b, decide_print(k, 1));
        step!(b, decide_milestone(k, Milestone::IndiciumSending));
        step!(b, decide_milestone(k, Milestone::IndiciumSent));
        step!(b, decide_ended(k, paper, complete));
        assert_eq!(settlement_of(&b, k), want, "{paper:?} {complete}");
    }
}

#[test]
fn an_indicium_the_printer_confirmed_is_on_paper_whatever_comes_after() {
    let mut b = JobBook::default();
    let k = authorized(&mut b, 1);
    step!(b, decide_print(k, 1));
    step!(b, decide_milestone(k, Milestone::IndiciumSending));
    step!(b, decide_milestone(k, Milestone::IndiciumSent));
    step!(b, decide_milestone(k, Milestone::IndiciumPrinted));
    // The streamer then reports a cleared buffer: the indicium was already out.
    step!(b, decide_ended(k, PaperVerdict::NotOnPaper, false));
    assert_eq!(settlement_of(&b, k), Settlement::VoidReachedPrinter);
}

#[test]
fn no_indicium_is_on_paper_before_it_was_announced() {
    // The streaming thread died and the shell can only guess; the journal knows better:
    // `indicium_sending` is journaled before the indicium's first byte that can mark paper.
    let mut b = JobBook::default();
    let k = authorized(&mut b, 1);
    step!(b, decide_print(k, 1));
    step!(b, decide_ended(k, PaperVerdict::AssumedPrinted, false));
    assert_eq!(settlement_of(&b, k), Settlement::Void);
}

#[test]
fn a_job_whose_end_id_came_back_is_complete_even_if_the_link_then_lapsed() {
    let mut b = JobBook::default();
    let k = authorized(&mut b, 1);
    step!(b, decide_print(k, 1));
    for m in [
        Milestone::IndiciumSending,
        Milestone::IndiciumSent,
        Milestone::IndiciumPrinted,
        Milestone::EndPrinted,
    ] {
        step!(b, decide_milestone(k, m));
    }
    step!(b, decide_ended(k, PaperVerdict::AssumedPrinted, false));
    assert_eq!(settlement_of(&b, k), Settlement::Commit);
}

#[test]
fn a_restart_settles_what_the_last_run_left_before_new_items() {
    let mut b = JobBook::default();
    let mut journal = Vec::new();
    // 1: authorize sent, no answer. 2: authorized, never printed. 3: cut before the
    // indicium. 4: indicium sent, not confirmed. 5: indicium confirmed, end not.
    // 6: settling a commit. 7: settled.
    let k1 = [1; 16];
    journal.extend(step!(b, decide_authorize(k1, 100, ids(1), "b1".into())));
    let mk = |b: &mut JobBook, journal: &mut Vec<Record>, n: u8| {
        let k = [n; 16];
        journal.extend(step!(b, decide_authorize(k, 100, ids(n), "bn".into())));
        journal.extend(step!(
            b,
            decide_authorized(k, Ok((u64::from(n), "s".into())))
        ));
        k
    };
    let k2 = mk(&mut b, &mut journal, 2);
    let k3 = mk(&mut b, &mut journal, 3);
    journal.extend(step!(b, decide_print(k3, 1)));
    let k4 = mk(&mut b, &mut journal, 4);
    journal.extend(step!(b, decide_print(k4, 1)));
    journal.extend(step!(b, decide_milestone(k4, Milestone::IndiciumSending)));
    journal.extend(step!(b, decide_milestone(k4, Milestone::IndiciumSent)));
    let k5 = mk(&mut b, &mut journal, 5);
    journal.extend(step!(b, decide_print(k5, 1)));
    journal.extend(step!(b, decide_milestone(k5, Milestone::IndiciumSending)));
    journal.extend(step!(b, decide_milestone(k5, Milestone::IndiciumSent)));
    journal.extend(step!(b, decide_milestone(k5, Milestone::IndiciumPrinted)));
    let k6 = mk(&mut b, &mut journal, 6);
    journal.extend(step!(b, decide_print(k6, 1)));
    journal.extend(step!(b, decide_milestone(k6, Milestone::IndiciumSending)));
    journal.extend(step!(b, decide_milestone(k6, Milestone::IndiciumSent)));
    journal.extend(step!(b, decide_ended(k6, PaperVerdict::Printed, true)));
    let k7 = mk(&mut b, &mut journal, 7);
    journal.extend(step!(b, decide_print(k7, 1)));
    journal.extend(step!(b, decide_ended(k7, PaperVerdict::NotOnPaper, false)));
    journal.extend(step!(
        b,
        decide_settled(
            k7,
            Answer::Ok {
                result: "voided".into(),
            },
        ),
    ));

    for records in [journal.clone(), b.snapshot()] {
        let mut r = JobBook::recover(records.iter());
        assert_eq!(r.last_run_open(), 6);
        assert!(matches!(
            r.decide_authorize([9; 16], 1, ids(9), "x".into()),
            Err(Refusal::SettlingLastRun(6))
        ));
        assert_eq!(r.decide_print(k2, 1), Err(Refusal::AlreadyPrinted));
        // The unanswered authorize is replayed with its own id and body.
        assert!(r.sends().contains(&Send::Authorize {
            job: k1,
            request_id: ids(1).authorize,
            body: "b1".into()
        }));
        step!(r, decide_authorized(k1, Ok((1, "s".into()))));
        assert_eq!(settlement_of(&r, k1), Settlement::Void);
        step!(r, decide_abandon(k2));
        assert_eq!(settlement_of(&r, k2), Settlement::Void);
        let drained = Resync::default();
        step!(r, decide_recovered(k3, drained));
        assert_eq!(settlement_of(&r, k3), Settlement::Void);
        step!(r, decide_recovered(k4, drained));
        assert_eq!(settlement_of(&r, k4), Settlement::VoidReachedPrinter);
        step!(
            r,
            decide_recovered(
                k5,
                Resync {
                    indicium_id_seen: false,
                    end_id_seen: true,
                },
            ),
        );
        assert_eq!(settlement_of(&r, k5), Settlement::Commit);
        assert_eq!(settlement_of(&r, k6), Settlement::Commit);
        assert!(r.get(&k7).is_none_or(|e| !e.stage.open()));
        // Every settlement goes with the job's original id.
        for s in r.sends() {
            if let Send::Settle {
                job,
                settlement,
                request_id,
                ..
            } = s
            {
                let n = job[0];
                assert_eq!(request_id, settlement.request_id(&ids(n)));
            }
        }
        for k in [k1, k2, k3, k4, k5, k6] {
            step!(
                r,
                decide_settled(
                    k,
                    Answer::Ok {
                        result: "ok".into(),
                    },
                ),
            );
        }
        assert_eq!(r.last_run_open(), 0);
        assert!(r.decide_authorize([9; 16], 1, ids(9), "x".into()).is_ok());
    }
}

#[test]
fn records_round_trip_as_json() {
    let r = Record::Outcome {
        job: [7; 16],
        paper: PaperVerdict::AssumedPrinted,
        complete: false,
        settlement: Settlement::VoidReachedPrinter,
    };
    let s = serde_json::to_string(&r).expect("json");
    assert!(s.contains("\"r\":\"outcome\""), "{s}");
    assert_eq!(serde_json::from_str::<Record>(&s).expect("back"), r);
    let a = Record::Authorizing {
        job: [1; 16],
        amount_cents: 5,
        ids: ids(1),
        body: "00".into(),
    };
    let s = serde_json::to_string(&a).expect("json");
    assert_eq!(serde_json::from_str::<Record>(&s).expect("back"), a);
}

#[test]
fn an_unanswered_authorize_is_replayed_then_voided_never_printed() {
    let mut b = JobBook::default();
    let k = [4; 16];
    step!(b, decide_authorize(k, 129, ids(4), "c4".into()));
    assert!(b.sends().is_empty(), "the first send is the shell's own");
    step!(b, decide_authorize_abandoned(k));
    assert_eq!(
        b.sends(),
        vec![Send::Authorize {
            job: k,
            request_id: ids(4).authorize,
            body: "c4".into()
        }]
    );
    let b2 = JobBook::recover(b.snapshot().iter());
    assert_eq!(b2.sends(), b.sends());
    step!(b, decide_authorized(k, Ok((4, "s".into()))));
    assert_eq!(b.decide_print(k, 1), Err(Refusal::AlreadyPrinted));
    assert_eq!(settlement_of(&b, k), Settlement::Void);
}

#[test]
fn open_jobs_are_bounded() {
    let mut b = JobBook::new(2, 8);
    authorized(&mut b, 1);
    authorized(&mut b, 2);
    assert_eq!(
        b.decide_authorize([3; 16], 1, ids(3), "x".into()),
        Err(Refusal::TooManyOpen(2))
    );
}

#[test]
fn settled_jobs_are_forgotten_beyond_the_bound() {
    let mut b = JobBook::new(4, 2);
    for n in 1..=5u8 {
        let k = authorized(&mut b, n);
        step!(b, decide_abandon(k));
        step!(
            b,
            decide_settled(
                k,
                Answer::Ok {
                    result: "voided".into(),
                },
            ),
        );
    }
    assert!(b.get(&[1; 16]).is_none());
    assert!(b.get(&[5; 16]).is_some());
    assert!(b.entries.len() <= 2);
}
