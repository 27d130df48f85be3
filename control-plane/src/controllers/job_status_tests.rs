use super::*;

#[test]
fn formats_runs_like_kubernetes() {
    let mut set = IndexSet::new();
    for i in [0, 1, 2, 4, 6, 7, 9] {
        set.insert(i);
    }
    assert_eq!(set.to_string(), "0-2,4,6,7,9");
    assert_eq!(IndexSet::new().to_string(), "");
}

#[test]
fn parses_what_it_formats_and_clips_to_completions() {
    let set = IndexSet::parse("0-2,4,6,7,9", 10);
    assert_eq!(set.len(), 7);
    assert_eq!(set.to_string(), "0-2,4,6,7,9");
    let clipped = IndexSet::parse("0-2,4,6,7,9", 5);
    assert_eq!(clipped.to_string(), "0-2,4");
}

#[test]
fn malformed_pieces_are_skipped() {
    let set = IndexSet::parse("1,x,3-y, 5 ,", 10);
    assert_eq!(set.to_string(), "1,5");
}

#[test]
fn first_missing_skips_done_and_taken_indexes() {
    let done = IndexSet::parse("0,2", 6);
    let taken = BTreeSet::from([1, 4]);
    assert_eq!(done.first_missing(&taken, 5, 6), vec![3, 5]);
    assert_eq!(done.first_missing(&taken, 1, 6), vec![3]);
}

#[test]
fn false_conditions_are_not_added_and_changes_are_reported() {
    use k8s_openapi::chrono::TimeZone;
    let now = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
    let mut status = JobStatus::default();
    assert!(!set_condition(
        &mut status,
        SUSPENDED,
        false,
        "JobResumed",
        "Job resumed",
        now
    ));
    assert!(status.conditions.is_none());
    assert!(set_condition(
        &mut status,
        SUSPENDED,
        true,
        "JobSuspended",
        "Job suspended",
        now
    ));
    assert!(!set_condition(
        &mut status,
        SUSPENDED,
        true,
        "JobSuspended",
        "Job suspended",
        now
    ));
    assert!(set_condition(
        &mut status,
        SUSPENDED,
        false,
        "JobResumed",
        "Job resumed",
        now
    ));
    assert_eq!(find(&status, SUSPENDED).unwrap().status, "False");
}

#[test]
fn a_verdict_waits_for_terminating_pods_before_the_terminal_condition() {
    use k8s_openapi::chrono::TimeZone;
    let now = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
    let mut status = JobStatus::default();
    let verdict = Verdict::failure(
        "DeadlineExceeded",
        "Job was active longer than specified deadline",
    );
    assert_eq!(verdict.record(&mut status, 2, now), None);
    assert!(is_true(&status, FAILURE_TARGET));
    assert!(find(&status, FAILED).is_none());
    assert_eq!(Verdict::recorded(&status), Some(verdict.clone()));
    let event = verdict.record(&mut status, 0, now).unwrap();
    assert_eq!(
        (event.0, event.1.as_str()),
        (EventType::Warning, "DeadlineExceeded")
    );
    assert!(is_true(&status, FAILED));
    assert_eq!(status.conditions.as_ref().unwrap().len(), 2);
}
