//! How a command ends: the exit codes of the command line (`Exit`), and the error that carries
//! the one chosen where the error was made (`ExitError`) up to `cli`, which prints the error and
//! ends with its code. An error that carries none ends with 1.
//! A leaf: it imports nothing of Gazette, so any module can make its errors with it.

use std::fmt;

/// The exit codes of every command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Exit {
    /// 0: done; for `check`, ready.
    Success = 0,
    /// 1: the input has problems, or the job failed (a refusal, the database, the network).
    Failure = 1,
    /// 2: Gazette cannot run as asked: the configuration or the command line must change first.
    Unusable = 2,
}

impl From<Exit> for std::process::ExitCode {
    fn from(exit: Exit) -> std::process::ExitCode {
        std::process::ExitCode::from(exit as u8)
    }
}

/// An error with the exit code chosen where it was made. It reads as the error it carries: the
/// same message and the same causes, so attaching a code changes no text.
#[derive(Debug)]
pub struct ExitError {
    exit: Exit,
    error: anyhow::Error,
}

impl ExitError {
    pub fn new(exit: Exit, error: impl Into<anyhow::Error>) -> ExitError {
        ExitError { exit, error: error.into() }
    }

    /// A configuration or command-line mistake, said in `message`: exit 2.
    pub fn unusable(message: impl fmt::Display + fmt::Debug + Send + Sync + 'static) -> ExitError {
        ExitError::new(Exit::Unusable, anyhow::Error::msg(message))
    }

    /// A problem of the input or a failure, said in `message`: exit 1.
    pub fn failure(message: impl fmt::Display + fmt::Debug + Send + Sync + 'static) -> ExitError {
        ExitError::new(Exit::Failure, anyhow::Error::msg(message))
    }

    pub fn exit(&self) -> Exit {
        self.exit
    }
}

impl fmt::Display for ExitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The carried error's own message only (never `{:#}`): its causes follow as `source`s.
        write!(f, "{}", self.error)
    }
}

impl std::error::Error for ExitError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.error.chain().nth(1)
    }
}

/// Attaches an exit code where an error is made: `parse(text).exit_with(Exit::Unusable)?`.
pub trait ExitWith<T> {
    fn exit_with(self, exit: Exit) -> Result<T, ExitError>;
}

impl<T, E: Into<anyhow::Error>> ExitWith<T> for Result<T, E> {
    fn exit_with(self, exit: Exit) -> Result<T, ExitError> {
        self.map_err(|e| ExitError::new(exit, e))
    }
}

/// The exit code attached to `e` where it was made: the outermost `ExitError` among its causes.
pub fn attached(e: &anyhow::Error) -> Option<Exit> {
    e.chain().find_map(|c| c.downcast_ref::<ExitError>()).map(ExitError::exit)
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn the_code_is_the_one_attached_where_the_error_was_made() {
        assert_eq!(attached(&anyhow::anyhow!("the job failed")), None);
        assert_eq!(attached(&ExitError::unusable("--week: not a week").into()), Some(Exit::Unusable));
        assert_eq!(attached(&ExitError::failure("no such subscriber").into()), Some(Exit::Failure));
        // Through the context added on the way up, and through a typed error's `source`.
        let e = anyhow::Error::from(ExitError::unusable("bad key")).context("while loading");
        assert_eq!(attached(&e), Some(Exit::Unusable));
        let io = std::io::Error::other("disk full");
        let e: anyhow::Result<()> = Err(io).exit_with(Exit::Unusable).context("outer");
        assert_eq!(attached(&e.unwrap_err()), Some(Exit::Unusable));
        // The outermost wins.
        let inner = anyhow::Error::from(ExitError::failure("inner"));
        assert_eq!(attached(&ExitError::new(Exit::Unusable, inner).into()), Some(Exit::Unusable));
        assert_eq!(std::process::ExitCode::from(Exit::Unusable), std::process::ExitCode::from(2));
    }

    #[test]
    fn attaching_a_code_changes_no_text() {
        let plain = || anyhow::anyhow!("root cause").context("middle").context("top");
        let coded: anyhow::Error = ExitError::new(Exit::Unusable, plain()).into();
        let lines = |e: &anyhow::Error| e.chain().map(ToString::to_string).collect::<Vec<_>>();
        assert_eq!(lines(&coded), lines(&plain()));
        assert_eq!(format!("{coded:#}"), format!("{:#}", plain()));
        assert_eq!(format!("{coded}"), "top");
        let outer = coded.context("outermost");
        assert_eq!(format!("{outer:#}"), "outermost: top: middle: root cause");
    }
}
