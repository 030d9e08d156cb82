//! `tend events` and `tend alerts` on the command line: the history as a journal, and the test
//! alert (see `client/journal.rs` for what they do).

use super::{Arg, Command, DEFAULT_EVENT_LINES, Parser, unexpected, usage};
use crate::error::Error;

impl Parser {
    pub(super) fn parse_events(&mut self) -> Result<Command, Error> {
        let mut id = None;
        let mut lines = DEFAULT_EVENT_LINES;
        let mut follow = false;
        while let Some(arg) = self.next_arg()? {
            match self.tail_flag(arg, &mut lines, &mut follow)? {
                None => {}
                Some(Arg::Positional(word)) if id.is_none() => id = Some(word),
                Some(other) => return Err(unexpected("events", other)),
            }
        }
        Ok(Command::Events { id, lines, follow })
    }

    pub(super) fn parse_alerts(&mut self) -> Result<Command, Error> {
        match self.next_arg()? {
            Some(Arg::Positional(word)) if word == "test" => {
                self.no_more_args("alerts")?;
                Ok(Command::AlertsTest)
            }
            Some(other) => Err(unexpected("alerts", other)),
            None => Err(usage(
                "`tend alerts` needs a subcommand: `tend alerts test`; see `tend help alerts`"
                    .into(),
            )),
        }
    }
}
