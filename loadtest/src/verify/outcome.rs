//! What the verdict is made of: one [`Check`] per invariant, and the
//! [`Problems`] collector each check fills with its counted examples.

use serde::Serialize;

/// Offending items listed per failed check; the rest are only counted.
const EXAMPLES_MAX: usize = 5;

/// One named check and its outcome.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Check {
    pub name: &'static str,
    pub passed: bool,
    pub detail: String,
}

/// All checks; the run passes only if every one does.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Verdict {
    pub passed: bool,
    pub checks: Vec<Check>,
}

impl Verdict {
    pub fn failed(&self) -> impl Iterator<Item = &Check> {
        self.checks.iter().filter(|c| !c.passed)
    }

    pub fn check(&self, name: &str) -> Option<&Check> {
        self.checks.iter().find(|c| c.name == name)
    }
}

/// Collects problems for one check, keeping a few examples.
pub(super) struct Problems {
    count: u64,
    examples: Vec<String>,
}

impl Problems {
    pub(super) fn new() -> Problems {
        Problems {
            count: 0,
            examples: Vec::new(),
        }
    }

    pub(super) fn add(&mut self, what: impl FnOnce() -> String) {
        self.count += 1;
        if self.examples.len() < EXAMPLES_MAX {
            self.examples.push(what());
        }
    }

    pub(super) fn into_check(self, name: &'static str, ok_detail: String) -> Check {
        if self.count == 0 {
            Check {
                name,
                passed: true,
                detail: ok_detail,
            }
        } else {
            Check {
                name,
                passed: false,
                detail: format!(
                    "{} problem(s), e.g. {}",
                    self.count,
                    self.examples.join("; ")
                ),
            }
        }
    }
}
