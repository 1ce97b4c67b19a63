//! `shoal completions SHELL` and `shoal man --dir DIR`: shell completion scripts and man pages
//! generated from the command's own definition, so they list exactly the commands and options
//! this build has.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use clap::Command;
use clap_complete::Shell;

use crate::error::CliError;

/// Prints the completion script for `shell` on standard output (a closed pipe, as with `| head`,
/// ends it quietly).
pub fn completions(mut command: Command, shell: Shell) -> Result<ExitCode, CliError> {
    let name = command.get_name().to_owned();
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut command, name, &mut script);
    match std::io::stdout().write_all(&script) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(CliError::unavailable(format!("cannot write the script: {e}")))
        }
        _ => Ok(ExitCode::SUCCESS),
    }
}

/// Writes `shoal.1` and one `shoal-COMMAND.1` per subcommand into `dir`; prints what it wrote.
pub fn man(mut command: Command, dir: &Path) -> Result<ExitCode, CliError> {
    std::fs::create_dir_all(dir)
        .map_err(|e| CliError::usage(format!("--dir: cannot create {}: {e}", dir.display())))?;
    command.build();
    let name = command.get_name().to_owned();
    let mut pages = vec![(name.clone(), command.clone())];
    for sub in command.get_subcommands().filter(|s| !s.is_hide_set()) {
        let page = format!("{name}-{}", sub.get_name());
        pages.push((page.clone(), sub.clone().display_name(page.clone()).bin_name(page)));
    }
    for (page, cmd) in &pages {
        let path = dir.join(format!("{page}.1"));
        let mut out = Vec::new();
        clap_mangen::Man::new(cmd.clone())
            .render(&mut out)
            .and_then(|()| std::fs::write(&path, out))
            .map_err(|e| CliError::usage(format!("--dir: cannot write {}: {e}", path.display())))?;
    }
    println!("wrote {} man pages to {}", pages.len(), dir.display());
    Ok(ExitCode::SUCCESS)
}
