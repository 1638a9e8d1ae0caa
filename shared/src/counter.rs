//! A journey's stats counters: what each one counts, and its name in the store (`entered`,
//! `step.<id>.sent.<channel>`, …), written by the fold and read back by the API from one place.

/// One counter of a journey.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counter<'a> {
    /// Users who entered.
    Entered,
    /// Users who converted (the journey's `goal`), with or without a message.
    Converted,
    /// Users who exited (an `exit_when` event, the journey stopped, a step that ended them).
    Exited,
    /// Users who went through to the end.
    Completed,
    /// Users a split held out.
    HeldOut,
    /// A counter of step `.0`.
    Step(&'a str, StepCounter<'a>),
}

/// What a step's counter counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepCounter<'a> {
    /// Visits to the step.
    Entered,
    /// Users waiting at the step now (added on a wait, taken off on waking).
    Waiting,
    /// Users who left the journey at the step.
    Exited,
    /// Conversions credited to the step's message (the last one before them).
    Converted,
    /// Messages sent, on this channel.
    Sent(&'a str),
    /// Messages skipped, for this reason.
    Skipped(&'a str),
    /// A split's path, by name: who took it, or who of them converted.
    Path(&'a str, Took),
    /// A split's holdout: who it held, or who of them converted.
    Holdout(Took),
}

/// Of a split's path or holdout: who took it, or who of those converted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Took {
    Entered,
    Converted,
}

impl Took {
    fn as_str(self) -> &'static str {
        match self {
            Took::Entered => "entered",
            Took::Converted => "converted",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "entered" => Some(Took::Entered),
            "converted" => Some(Took::Converted),
            _ => None,
        }
    }
}

impl<'a> Counter<'a> {
    /// Writes the counter's name into `name` (cleared first): no allocation when `name` has
    /// room, as the stats fold names every timeline entry's counter.
    #[inline(always)]
    pub fn write(&self, name: &mut String) {
        name.clear();
        let step = match self {
            Counter::Entered => return name.push_str("entered"),
            Counter::Converted => return name.push_str("converted"),
            Counter::Exited => return name.push_str("exited"),
            Counter::Completed => return name.push_str("completed"),
            Counter::HeldOut => return name.push_str("held_out"),
            Counter::Step(step, what) => {
                name.push_str("step.");
                name.push_str(step);
                name.push('.');
                what
            }
        };
        let (kind, rest) = match step {
            StepCounter::Entered => ("entered", None),
            StepCounter::Waiting => ("waiting", None),
            StepCounter::Exited => ("exited", None),
            StepCounter::Converted => ("converted", None),
            StepCounter::Sent(channel) => ("sent.", Some(*channel)),
            StepCounter::Skipped(reason) => ("skipped.", Some(*reason)),
            StepCounter::Path(path, took) => {
                name.push_str("path.");
                name.push_str(path);
                name.push('.');
                (took.as_str(), None)
            }
            StepCounter::Holdout(took) => {
                name.push_str("holdout.");
                (took.as_str(), None)
            }
        };
        name.push_str(kind);
        if let Some(rest) = rest {
            name.push_str(rest);
        }
    }

    /// The counter's name.
    pub fn name(&self) -> String {
        let mut name = String::new();
        self.write(&mut name);
        name
    }

    /// The counter a name written by [`Counter::write`] stands for; `None` for a name it
    /// never writes (one a newer Waymark added).
    pub fn parse(name: &'a str) -> Option<Self> {
        match name {
            "entered" => return Some(Counter::Entered),
            "converted" => return Some(Counter::Converted),
            "exited" => return Some(Counter::Exited),
            "completed" => return Some(Counter::Completed),
            "held_out" => return Some(Counter::HeldOut),
            _ => {}
        }
        // Step ids, path names, channels and skip reasons have no dots.
        let (step, rest) = name.strip_prefix("step.")?.split_once('.')?;
        let what = match rest.split_once('.') {
            None => match rest {
                "entered" => StepCounter::Entered,
                "waiting" => StepCounter::Waiting,
                "exited" => StepCounter::Exited,
                "converted" => StepCounter::Converted,
                _ => return None,
            },
            Some(("sent", channel)) => StepCounter::Sent(channel),
            Some(("skipped", reason)) => StepCounter::Skipped(reason),
            Some(("holdout", took)) => StepCounter::Holdout(Took::parse(took)?),
            Some(("path", named)) => {
                let (path, took) = named.split_once('.')?;
                StepCounter::Path(path, Took::parse(took)?)
            }
            Some(_) => return None,
        };
        Some(Counter::Step(step, what))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_counter_reads_back_as_itself() {
        let step = |what| Counter::Step("push_1", what);
        let all = [
            (Counter::Entered, "entered"),
            (Counter::Converted, "converted"),
            (Counter::Exited, "exited"),
            (Counter::Completed, "completed"),
            (Counter::HeldOut, "held_out"),
            (step(StepCounter::Entered), "step.push_1.entered"),
            (step(StepCounter::Waiting), "step.push_1.waiting"),
            (step(StepCounter::Exited), "step.push_1.exited"),
            (step(StepCounter::Converted), "step.push_1.converted"),
            (step(StepCounter::Sent("push")), "step.push_1.sent.push"),
            (
                step(StepCounter::Skipped("no_address")),
                "step.push_1.skipped.no_address",
            ),
            (
                step(StepCounter::Path("momentum", Took::Entered)),
                "step.push_1.path.momentum.entered",
            ),
            (
                step(StepCounter::Path("momentum", Took::Converted)),
                "step.push_1.path.momentum.converted",
            ),
            (
                step(StepCounter::Holdout(Took::Entered)),
                "step.push_1.holdout.entered",
            ),
            (
                step(StepCounter::Holdout(Took::Converted)),
                "step.push_1.holdout.converted",
            ),
        ];
        for (counter, name) in all {
            assert_eq!(counter.name(), name);
            assert_eq!(Counter::parse(name), Some(counter), "{name}");
        }
        // A name from a newer Waymark, or none at all.
        for name in [
            "step.push_1.opened",
            "step.push_1.path.momentum.clicked",
            "step.push_1",
            "steps",
            "",
        ] {
            assert_eq!(Counter::parse(name), None, "{name}");
        }
    }
}
