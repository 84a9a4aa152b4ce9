//! The section state machine: feeds lexed lines through the directive table.
//!
//! States: [`Section::Global`] until the first header line, then
//! [`Section::Listener`] after `listener`, [`Section::Connection`] after
//! `connection <name>`. Broker-wide and per-listener keys are valid in every
//! state (as in Mosquitto, a global key after a `listener` line is still
//! global); bridge keys only inside a `connection` section. A header line
//! closes the open section first, which is where a bridge is checked as a
//! whole and added to [`Config::bridges`].

use super::bridge::BridgeSection;
use super::directives::{self, Apply, Directive, Scope};
use super::lexer::Line;
use super::listener::Listeners;
use super::value;
use super::{Config, ConfigError, ConfigWarning};

/// The section the next line belongs to.
pub(super) enum Section {
    /// Before any `listener` or `connection` line.
    Global,
    /// After a `listener` line: per-listener keys apply to that listener.
    Listener,
    /// After `connection <name>`: bridge keys apply to this bridge (boxed:
    /// it holds a whole `BridgeConfig`).
    Connection(Box<BridgeSection>),
}

/// Parser state for one file.
pub(super) struct Parser<'p> {
    path: &'p str,
    /// The configuration built so far (starts at the defaults).
    pub config: Config,
    /// Explicit listeners and the legacy default listener.
    pub listeners: Listeners,
    /// Whether a `log_type` line was seen (the first one replaces the defaults).
    pub log_types_set: bool,
    /// Whether a `log_dest` line was seen (the first one replaces the default).
    pub log_dests_set: bool,
    /// The open section.
    pub section: Section,
    /// Line of the first key `per_listener_settings` scopes, if any.
    pub security_line: Option<usize>,
    /// `allow_anonymous` was set broker-wide, and on the default listener
    /// (else its default is decided at the end: see
    /// `security::anonymous_default`).
    pub anonymous_set: bool,
    pub default_anonymous_set: bool,
    warnings: Vec<ConfigWarning>,
}

impl<'p> Parser<'p> {
    /// A parser at the defaults; `path` is used in messages.
    pub fn new(path: &'p str) -> Self {
        Parser {
            path,
            config: Config::default(),
            listeners: Listeners::default(),
            log_types_set: false,
            log_dests_set: false,
            section: Section::Global,
            security_line: None,
            anonymous_set: false,
            default_anonymous_set: false,
            warnings: Vec::new(),
        }
    }

    /// Applies one line.
    pub fn line(&mut self, line: &Line<'_>) -> Result<(), ConfigError> {
        let Some(directive) = directives::lookup(line.key) else {
            if directives::is_unsupported_prefix(line.key) {
                self.warn_unsupported(line);
                return Ok(());
            }
            return Err(self.error(line.number, line.key, directives::unknown(line.key)));
        };
        self.apply(directive, line)
    }

    fn apply(&mut self, directive: &Directive, line: &Line<'_>) -> Result<(), ConfigError> {
        match directive.scope {
            Scope::Header => self.close_section()?,
            Scope::Bridge if !matches!(self.section, Section::Connection(_)) => {
                let reason = "only valid after a `connection` line (it is a bridge option)";
                return Err(self.error(line.number, line.key, reason.to_string()));
            }
            Scope::Global | Scope::Listener | Scope::Bridge => {}
        }
        let applied = match directive.apply {
            Apply::Unsupported => {
                self.warn_unsupported(line);
                Ok(())
            }
            Apply::Flag(field) => {
                value::boolean_line(line).map(|flag| *field(&mut self.config) = flag)
            }
            Apply::Custom(apply) => apply(self, line),
        };
        applied.map_err(|reason| self.error(line.number, line.key, reason))
    }

    /// Closes the open section (completing a bridge) and returns to `Global`.
    fn close_section(&mut self) -> Result<(), ConfigError> {
        if let Section::Connection(bridge) = std::mem::replace(&mut self.section, Section::Global) {
            let line = bridge.line;
            let bridge = bridge
                .finish(super::bridge::hostname)
                .map_err(|reason| self.error(line, "connection", reason))?;
            self.config.bridges.push(bridge);
        }
        Ok(())
    }

    /// The open bridge section (bridge directives run only inside one).
    pub fn bridge(&mut self) -> Result<&mut BridgeSection, String> {
        match &mut self.section {
            Section::Connection(bridge) => Ok(bridge.as_mut()),
            _ => Err("only valid after a `connection` line".to_string()),
        }
    }

    /// The file being parsed, as given (for messages).
    pub fn path(&self) -> &str {
        self.path
    }

    /// Records a warning for `line`.
    pub fn warn(&mut self, line: usize, message: String) {
        self.warnings.push(ConfigWarning {
            path: self.path.to_string(),
            line,
            message,
        });
    }

    fn warn_unsupported(&mut self, line: &Line<'_>) {
        let message = format!(
            "{} is a Mosquitto option shardmq does not support yet; ignored",
            line.key
        );
        self.warn(line.number, message);
    }

    fn error(&self, line: usize, key: &str, reason: String) -> ConfigError {
        invalid(self.path, line, key, reason)
    }

    /// Closes the last section and returns the validated result.
    pub fn finish(mut self) -> Result<(Config, Vec<ConfigWarning>), ConfigError> {
        self.close_section()?;
        if let Some((line, message)) = self.listeners.unused_default_settings() {
            self.warn(line, message);
        }
        let path = self.path;
        self.config.local_only = self.listeners.local_only();
        self.config.listeners = std::mem::take(&mut self.listeners)
            .finish()
            .map_err(|(line, key, reason)| invalid(path, line, key, reason))?;
        super::security::anonymous_default(&mut self);
        Ok((self.config, self.warnings))
    }
}

fn invalid(path: &str, line: usize, key: &str, reason: String) -> ConfigError {
    ConfigError::Invalid {
        path: path.to_string(),
        line,
        key: key.to_string(),
        reason,
    }
}
