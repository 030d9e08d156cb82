//! `tend events` and `tend alerts` on the command line: the history as a journal, and the test
//! alert (see `client/journal.rs` for what they do).

use super::{Arg, Command, DEFAULT_EVENT_LINES, Parser, parse_number, unexpected, usage};
use crate::error::Error;

impl Parser {
    pub(super) fn parse_events(&mut self) -> Result<Command, Error> {
        let mut id = None;
        let mut lines = DEFAULT_EVENT_LINES;
        let mut follow = false;
        while let Some(arg) = self.next_arg()? {
            match arg {
                Arg::Flag { name, inline } => match name.as_str() {
                    "-n" | "--lines" => {
                        let value = self.value(&name, inline)?;
                        lines = parse_number(&name, &value)?;
                    }
                    "-f" | "--follow" if inline.is_none() => follow = true,
                    short if short.starts_with("-n") && inline.is_none() => {
                        lines = parse_number("-n", &short[2..])?;
                    }
                    _ => return Err(unexpected("events", Arg::Flag { name, inline })),
                },
                Arg::Positional(word) if id.is_none() => id = Some(word),
                other => return Err(unexpected("events", other)),
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
