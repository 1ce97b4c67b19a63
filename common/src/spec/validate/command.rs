//! The `command` section: an external trial's program, environment and working directory.

use std::path::PathBuf;

use crate::proto;
use crate::spec::config::CommandConfig;
use crate::spec::errors::FieldErrors;

pub(super) fn command(c: &mut FieldErrors, cmd: Option<&proto::CommandSpec>) -> Option<CommandConfig> {
    let cmd = cmd?;
    if cmd.argv.is_empty() || cmd.argv[0].trim().is_empty() {
        c.fail("command.argv", "must name a program to run");
    }
    let mut env: Vec<(String, String)> = cmd.env.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    env.sort();
    for (k, _) in &env {
        if k.is_empty() || k.contains('=') || k.contains('\0') {
            c.fail(format!("command.env.{k}"), "is not a valid variable name");
        }
    }
    Some(CommandConfig {
        argv: cmd.argv.clone(),
        env,
        workdir: (!cmd.workdir.trim().is_empty()).then(|| PathBuf::from(cmd.workdir.trim())),
    })
}
