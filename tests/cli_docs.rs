//! The programs' command lines and their documentation agree: every command, flag and environment
//! variable `--help` shows is named in the README and in `docs/operations.md`, and every flag
//! those documents give a command line of ours exists.

use std::collections::BTreeSet;

use clap::CommandFactory;

/// Everything a command line offers: subcommand paths, `--flags` and environment variables.
#[derive(Default)]
struct Surface {
    commands: BTreeSet<String>,
    flags: BTreeSet<String>,
    envs: BTreeSet<String>,
}

fn walk(command: &clap::Command, path: &str, surface: &mut Surface) {
    for arg in command.get_arguments() {
        let Some(long) = arg.get_long() else { continue };
        // clap's own --help and --version (not a command's flag that happens to be named so).
        if matches!(arg.get_action(), clap::ArgAction::Help | clap::ArgAction::Version) {
            continue;
        }
        surface.flags.insert(format!("--{long}"));
        if let Some(env) = arg.get_env() {
            surface.envs.insert(env.to_string_lossy().into_owned());
        }
    }
    for sub in command.get_subcommands().filter(|s| s.get_name() != "help") {
        let sub_path = format!("{path} {}", sub.get_name());
        surface.commands.insert(sub_path.clone());
        walk(sub, &sub_path, surface);
    }
}

fn surface() -> Surface {
    let mut surface = Surface::default();
    walk(&core_service::config::Cli::command(), "core-service", &mut surface);
    walk(&http_gateway::Cli::command(), "http-gateway", &mut surface);
    surface
}

fn read(path: &str) -> String {
    std::fs::read_to_string(format!("{}/{path}", env!("CARGO_MANIFEST_DIR")))
        .unwrap_or_else(|e| panic!("cannot read {path}: {e}"))
}

/// A leaf command is named when its words appear in order, e.g. `core-service token revoke` as
/// "token revoke" or in a list such as "token add|list|revoke".
fn names_command(doc: &str, path: &str) -> bool {
    let words: Vec<&str> = path.split(' ').skip(1).collect();
    let last = words.last().copied().unwrap_or_default();
    doc.contains(&words.join(" "))
        || (words.len() == 2 && doc.lines().any(|line| line.contains(words[0]) && line.contains(last)))
}

#[test]
fn every_command_flag_and_variable_is_documented() {
    let surface = surface();
    for doc_path in ["README.md", "docs/operations.md"] {
        let doc = read(doc_path);
        let missing: Vec<&String> = surface
            .commands
            .iter()
            .filter(|c| !names_command(&doc, c))
            .chain(surface.flags.iter().filter(|f| !doc.contains(f.as_str())))
            .chain(surface.envs.iter().filter(|e| !doc.contains(e.as_str())))
            .collect();
        assert!(missing.is_empty(), "{doc_path} does not mention {missing:?}");
    }
}

#[test]
fn every_flag_the_documents_give_our_programs_exists() {
    let surface = surface();
    for doc_path in ["README.md", "docs/operations.md"] {
        let doc = read(doc_path);
        for line in doc.lines().filter(|l| l.contains("core-service ") || l.contains("http-gateway ")) {
            // Only what follows the program's name on a command line, not curl's or cargo's flags.
            let Some(at) = line.find("core-service ").or_else(|| line.find("http-gateway ")) else {
                continue;
            };
            for word in line[at..].split(|c: char| c.is_whitespace() || "`|,;()[]".contains(c)) {
                let flag = word.split('=').next().unwrap_or_default();
                if flag.starts_with("--") && flag.len() > 2 {
                    assert!(
                        surface.flags.contains(flag),
                        "{doc_path} gives `{flag}` to a program that has no such flag: {line}"
                    );
                }
            }
        }
    }
}
