//! What a StatefulSet's next step is, from the pods it has (upstream's
//! updateStatefulSet): pods are `<set>-<ordinal>`; with OrderedReady, one
//! pod is created at a time, each only once the one before is Running and
//! Ready, and removed highest ordinal first; a rolling update replaces one
//! pod at a time from the highest ordinal down to the partition. Pure, so
//! every ordering rule is tested on plain values.

/// One existing pod of the set, as the plan needs to see it.
#[derive(Debug, Clone, PartialEq)]
pub struct Member {
    pub ordinal: i32,
    /// Running and Ready.
    pub ready: bool,
    pub terminating: bool,
    /// Ended (Succeeded or Failed): replaced, as upstream does.
    pub ended: bool,
    /// Its `controller-revision-hash` label.
    pub revision: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Want {
    /// `spec.ordinals.start`.
    pub start: i32,
    pub replicas: i32,
    /// `podManagementPolicy: Parallel`.
    pub parallel: bool,
    /// `updateStrategy: RollingUpdate` (else OnDelete).
    pub rolling: bool,
    pub partition: i32,
    pub current_revision: String,
    pub update_revision: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Create the pod of this ordinal at this revision.
    Create { ordinal: i32, revision: String },
    /// Delete the pod of this ordinal.
    Delete { ordinal: i32 },
}

impl Want {
    /// The revision a new pod of `ordinal` is made at: below the partition
    /// a rolling update keeps the current revision.
    pub fn revision_for(&self, ordinal: i32) -> &str {
        if self.rolling && ordinal < self.start + self.partition {
            &self.current_revision
        } else {
            &self.update_revision
        }
    }

    fn in_range(&self, ordinal: i32) -> bool {
        ordinal >= self.start && ordinal < self.start + self.replicas.max(0)
    }
}

pub fn plan(want: &Want, members: &[Member]) -> Vec<Step> {
    let mut steps = Vec::new();
    let find = |ordinal: i32| members.iter().find(|m| m.ordinal == ordinal);
    let serial = !want.parallel;
    // Creation and replacement, lowest ordinal first.
    let mut waiting = false;
    for ordinal in want.start..want.start + want.replicas.max(0) {
        match find(ordinal) {
            None => {
                steps.push(Step::Create { ordinal, revision: want.revision_for(ordinal).to_string() });
                waiting = true;
            }
            Some(m) if m.ended && !m.terminating => {
                steps.push(Step::Delete { ordinal });
                waiting = true;
            }
            Some(m) if m.terminating || !m.ready => waiting = true,
            Some(_) => {}
        }
        if serial && waiting {
            return steps;
        }
    }
    // Scale down, highest ordinal first; one at a time unless Parallel.
    let mut condemned: Vec<&Member> = members.iter().filter(|m| !want.in_range(m.ordinal)).collect();
    condemned.sort_by_key(|m| std::cmp::Reverse(m.ordinal));
    if serial {
        if let Some(m) = condemned.first() {
            if !m.terminating {
                steps.push(Step::Delete { ordinal: m.ordinal });
            }
            return steps;
        }
    } else {
        steps.extend(condemned.iter().filter(|m| !m.terminating).map(|m| Step::Delete { ordinal: m.ordinal }));
        if !condemned.is_empty() || waiting {
            return steps;
        }
    }
    // Rolling update: one pod at a time, from the top down to the partition,
    // and only while every pod is Running and Ready.
    if want.rolling {
        for ordinal in (want.start + want.partition.max(0)..want.start + want.replicas.max(0)).rev() {
            if let Some(m) = find(ordinal) {
                if m.revision != want.update_revision {
                    steps.push(Step::Delete { ordinal });
                    break;
                }
            }
        }
    }
    steps
}

#[cfg(test)]
mod tests {
    use super::*;

    fn want(replicas: i32) -> Want {
        Want { start: 0, replicas, parallel: false, rolling: true, partition: 0, current_revision: "r1".into(), update_revision: "r1".into() }
    }

    fn member(ordinal: i32, ready: bool, revision: &str) -> Member {
        Member { ordinal, ready, terminating: false, ended: false, revision: revision.into() }
    }

    fn create(ordinal: i32, revision: &str) -> Step {
        Step::Create { ordinal, revision: revision.into() }
    }

    #[test]
    fn ordered_ready_creates_one_at_a_time() {
        let w = want(3);
        assert_eq!(plan(&w, &[]), [create(0, "r1")]);
        assert_eq!(plan(&w, &[member(0, false, "r1")]), []);
        assert_eq!(plan(&w, &[member(0, true, "r1")]), [create(1, "r1")]);
        assert_eq!(plan(&w, &[member(0, true, "r1"), member(1, true, "r1"), member(2, true, "r1")]), []);
    }

    #[test]
    fn parallel_creates_all_at_once() {
        let w = Want { parallel: true, ..want(3) };
        assert_eq!(plan(&w, &[member(1, false, "r1")]), [create(0, "r1"), create(2, "r1")]);
    }

    #[test]
    fn scale_down_removes_the_highest_first_and_waits() {
        let w = want(1);
        let mut pods = vec![member(0, true, "r1"), member(1, true, "r1"), member(2, true, "r1")];
        assert_eq!(plan(&w, &pods), [Step::Delete { ordinal: 2 }]);
        pods[2].terminating = true;
        assert_eq!(plan(&w, &pods), []);
        pods.pop();
        assert_eq!(plan(&w, &pods), [Step::Delete { ordinal: 1 }]);
    }

    #[test]
    fn ended_pods_are_replaced() {
        let w = want(2);
        let ended = Member { ended: true, ..member(0, false, "r1") };
        assert_eq!(plan(&w, &[ended, member(1, true, "r1")]), [Step::Delete { ordinal: 0 }]);
    }

    #[test]
    fn rolling_updates_go_top_down_to_the_partition() {
        let w = Want { update_revision: "r2".into(), partition: 1, ..want(3) };
        let pods = [member(0, true, "r1"), member(1, true, "r1"), member(2, true, "r1")];
        assert_eq!(plan(&w, &pods), [Step::Delete { ordinal: 2 }]);
        // Recreated below the partition at the current revision, above at the new.
        assert_eq!(plan(&w, &[member(1, true, "r1"), member(2, true, "r2")]), [create(0, "r1")]);
        assert_eq!(plan(&w, &[member(0, true, "r1"), member(1, true, "r1")]), [create(2, "r2")]);
        let updated = [member(0, true, "r1"), member(1, true, "r2"), member(2, true, "r2")];
        assert_eq!(plan(&w, &updated), []);
        let on_delete = Want { rolling: false, ..w };
        assert_eq!(plan(&on_delete, &pods), []);
    }
}
