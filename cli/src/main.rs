//! The `waymark` command: validate, simulate and render journey files; run the whole engine
//! locally (`dev`); publish to and read stats from a running Waymark. Each subcommand is a thin
//! shell over `waymark-shared`; errors become messages and exit status 1 here, at the edge.

/// `eprintln!` that an error console no one reads cannot stop (`waymark validate … 2>&1 |
/// head`, stderr a pipe whose reader is gone): `eprintln!` would panic there (exit 101) and
/// lose the exit status the command meant. What could not be told is lost, the status is not.
macro_rules! say_err {
    ($($t:tt)*) => {{
        use ::std::io::Write as _;
        let _ = writeln!(::std::io::stderr(), $($t)*);
    }};
}

mod data;
mod dev;
mod expect;
mod remote;
mod settings;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use waymark::duration::Duration;
use waymark::runtime::Config;
use waymark::{dsl, render, simulate};

/// mimalloc (`waymark::alloc`): glibc's malloc and free took 30% of the engine's instructions
/// (see README, Measured).
#[global_allocator]
static ALLOC: waymark::alloc::Mimalloc = waymark::alloc::Mimalloc;

#[derive(Debug, Parser)]
#[command(
    name = "waymark",
    version,
    about = "Customer journeys as files: validate, simulate, run locally, publish"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check journey files (or folders of them); prints each problem as file:line:col.
    Validate {
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// Run journeys against a script of timed events; prints the timeline as JSON lines.
    Simulate {
        /// The folder of journey files (and its optional waymark.yaml), or one journey file
        /// (its folder's waymark.yaml applies).
        #[arg(long)]
        journeys: PathBuf,
        /// JSON lines, each a track, identify, page, screen, alias or group body with an "at" time.
        #[arg(long)]
        events: PathBuf,
        /// How long to keep going after the last event (e.g. 30d).
        #[arg(long, default_value = "30d")]
        horizon: Duration,
        /// Compare the timeline with this file instead of printing it: print a diff and exit 1
        /// when they differ (a journey's test in CI).
        #[arg(long, value_name = "FILE")]
        expect: Option<PathBuf>,
        /// With --expect: write the timeline to that file (after an intended change; review the
        /// file's diff before committing it).
        #[arg(long, requires = "expect")]
        bless: bool,
        /// Print each journey's stats after the run instead of the timeline, as `waymark stats`
        /// prints a deployed journey's: the funnel per step, and each split's paths with
        /// their conversion rates.
        #[arg(long, conflicts_with = "expect")]
        stats: bool,
    },
    /// Print a journey as a Mermaid flowchart.
    Render { file: PathBuf },
    /// Run the whole engine locally: the API, the store, timers, and an outbox file.
    Dev(dev::DevArgs),
    /// List the messages `waymark dev` gave up on (JSON lines), or move them back to its queue;
    /// whether it runs or not.
    DeadLetters {
        #[arg(long, default_value = ".waymark")]
        data: PathBuf,
        /// Move them back to the queue: they run at once if `waymark dev` runs, else when it
        /// next starts.
        #[arg(long)]
        redrive: bool,
    },
    /// Print the inbox token of a user under the dev signing secret.
    Token {
        user: String,
        #[arg(long, default_value = ".waymark")]
        data: PathBuf,
    },
    /// Validate journey files, then publish each to a running Waymark.
    Publish {
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// The API's base URL (left out: the `waymark dev` running on `--data`).
        #[arg(long, env = "WAYMARK_API_URL")]
        api: Option<String>,
        /// An admin key (left out: that `waymark dev`'s, from its data folder).
        #[arg(long, env = "WAYMARK_ADMIN_KEY", hide_env_values = true)]
        key: Option<String>,
        /// The data folder of the `waymark dev` to ask when `--api` is left out.
        #[arg(long, default_value = ".waymark")]
        data: PathBuf,
    },
    /// What happened to a user in each journey and why: entries, waits, sends, skips and
    /// their reasons, exits, and the triggers that did not enter them.
    Why {
        user: String,
        /// Only this journey.
        #[arg(long)]
        journey: Option<String>,
        /// The API's base URL (left out: the `waymark dev` running on `--data`).
        #[arg(long, env = "WAYMARK_API_URL")]
        api: Option<String>,
        /// An admin key (left out: that `waymark dev`'s, from its data folder).
        #[arg(long, env = "WAYMARK_ADMIN_KEY", hide_env_values = true)]
        key: Option<String>,
        /// The data folder of the `waymark dev` to ask when `--api` is left out.
        #[arg(long, default_value = ".waymark")]
        data: PathBuf,
    },
    /// Print a journey's figures per step.
    Stats {
        journey: String,
        /// The API's base URL (left out: the `waymark dev` running on `--data`).
        #[arg(long, env = "WAYMARK_API_URL")]
        api: Option<String>,
        /// An admin key (left out: that `waymark dev`'s, from its data folder).
        #[arg(long, env = "WAYMARK_ADMIN_KEY", hide_env_values = true)]
        key: Option<String>,
        /// The data folder of the `waymark dev` to ask when `--api` is left out.
        #[arg(long, default_value = ".waymark")]
        data: PathBuf,
    },
}

fn main() -> ExitCode {
    init_logs();
    let cli = Cli::parse();
    // `simulate` tells a run it cannot make (exit 2) from a timeline that differs (exit 1).
    let simulating = matches!(cli.command, Command::Simulate { .. });
    let outcome = match cli.command {
        Command::Validate { paths } => Ok(validate(&paths)),
        Command::Simulate {
            journeys,
            events,
            horizon,
            expect,
            bless,
            stats,
        } => simulate(&journeys, &events, horizon, expect.as_deref(), bless, stats),
        Command::Render { file } => render(&file),
        Command::Dev(args) => multi_thread()
            .and_then(|rt| rt.block_on(dev::run(args)))
            .map(|()| true),
        Command::DeadLetters { data, redrive } => {
            current_thread().and_then(|rt| rt.block_on(dev::dead_letters(&data, redrive)))
        }
        Command::Token { user, data } => data::signer(&data::DataDir::new(data))
            .and_then(|s| print_out(&format!("{}\n", s.inbox_token(&user))))
            .map(|()| true),
        Command::Publish {
            paths,
            api,
            key,
            data,
        } => current_thread().and_then(|rt| {
            rt.block_on(remote::publish(
                || remote::ApiClient::of(api.as_deref(), key.as_deref(), &data),
                &paths,
            ))
        }),
        Command::Why {
            user,
            journey,
            api,
            key,
            data,
        } => current_thread().and_then(|rt| {
            rt.block_on(async {
                let client = remote::ApiClient::of(api.as_deref(), key.as_deref(), &data)?;
                print_out(&remote::why(&client, &user, journey.as_deref()).await?)?;
                Ok(true)
            })
        }),
        Command::Stats {
            journey,
            api,
            key,
            data,
        } => current_thread().and_then(|rt| {
            rt.block_on(async {
                let client = remote::ApiClient::of(api.as_deref(), key.as_deref(), &data)?;
                print_out(&remote::stats(&client, &journey).await?)?;
                Ok(true)
            })
        }),
    };
    match outcome {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            if !e.is::<CannotRun>() {
                say_err!("error: {e:#}");
            }
            if simulating {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// Journeys or settings a simulation cannot run with; their problems are printed already.
#[derive(Debug)]
struct CannotRun;

impl std::fmt::Display for CannotRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the simulation cannot run: see the problems above")
    }
}

impl std::error::Error for CannotRun {}

/// Logs go to stderr; `RUST_LOG` tunes them (default: warnings).
fn init_logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

fn current_thread() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn multi_thread() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// Writes `text` on stdout. A reader that went away (`waymark simulate … | head`) ends the
/// output quietly, as `git log | head` does: what it read is what it wanted. Any other failure
/// is an error.
pub(crate) fn print_out(text: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    dev::printed(out.write_all(text.as_bytes()).and_then(|()| out.flush()))
        .context("writing output")?;
    Ok(())
}

/// `validate`'s verdict for valid paths, on stdout: `true`, unless stdout cannot be written
/// (a reader gone is no failure).
fn said(verdict: &str) -> bool {
    match print_out(verdict) {
        Ok(()) => true,
        Err(e) => {
            say_err!("error: {e:#}");
            false
        }
    }
}

/// Prints file errors in the order of the files' lines.
pub(crate) fn print_errors(errors: &[dsl::FileError]) {
    let mut err = std::io::stderr().lock();
    for line in error_lines(errors) {
        let _ = writeln!(err, "{line}");
    }
}

/// The lines that print `errors`: each file's first [`dsl::MAX_ERRORS_SHOWN`] in file order,
/// then, for a file with more, how many more there are (at least, when its read stopped at
/// [`dsl::MAX_PROBLEMS_READ`]), never a silent cut.
pub(crate) fn error_lines(errors: &[dsl::FileError]) -> Vec<String> {
    let mut lines = Vec::new();
    let sorted = in_file_order(errors);
    for file in sorted.chunk_by(|a, b| a.file == b.file) {
        let (stopped, listed): (Vec<&&dsl::FileError>, Vec<&&dsl::FileError>) =
            file.iter().partition(|e| e.message == dsl::READ_STOPPED);
        lines.extend(
            listed
                .iter()
                .take(dsl::MAX_ERRORS_SHOWN)
                .map(|e| e.to_string()),
        );
        let more = listed.len().saturating_sub(dsl::MAX_ERRORS_SHOWN);
        let shown = listed.len() - more;
        let name = &file[0].file;
        match (more, stopped.is_empty()) {
            (0, true) => {}
            (0, false) => lines.extend(stopped.iter().map(|e| e.to_string())),
            (more, true) => lines.push(format!(
                "{name}: and {more} more error(s), not shown ({shown} of {} shown): fix these and validate it again",
                listed.len()
            )),
            (more, false) => lines.push(format!(
                "{name}: and at least {more} more error(s), not shown ({shown} shown; its read stopped after {}): fix these and validate it again",
                listed.len()
            )),
        }
    }
    lines
}

/// How many errors there are, as the last line of a failed check says it: "at least" when a
/// file's read stopped before its end.
pub(crate) fn error_count(errors: &[dsl::FileError]) -> String {
    let stopped = errors.iter().any(|e| e.message == dsl::READ_STOPPED);
    let counted = errors
        .iter()
        .filter(|e| e.message != dsl::READ_STOPPED)
        .count();
    if stopped {
        format!("at least {counted} error(s)")
    } else {
        format!("{counted} error(s)")
    }
}

/// File errors by file, line and column (the checks find them in an order of their own: the
/// file's shape first, then steps' references, then templates).
pub(crate) fn in_file_order(errors: &[dsl::FileError]) -> Vec<&dsl::FileError> {
    let mut sorted: Vec<&dsl::FileError> = errors.iter().collect();
    sorted.sort_by(|a, b| (&a.file, a.line, a.column).cmp(&(&b.file, b.line, b.column)));
    sorted
}

/// Returns whether everything was valid.
fn validate(all: &[PathBuf]) -> bool {
    // A settings file named on its own is checked as settings, not read as a journey.
    let (settings_files, paths): (Vec<PathBuf>, Vec<PathBuf>) =
        all.iter().cloned().partition(|p| {
            p.is_file() && p.file_stem().and_then(|s| s.to_str()) == Some(dsl::SETTINGS_STEM)
        });
    let paths = paths.as_slice();
    let mut errors = Vec::new();
    for file in &settings_files {
        if let Err(e) = settings::check_named(file) {
            errors.extend(e);
        }
    }
    if paths.is_empty() && !settings_files.is_empty() {
        if errors.is_empty() {
            return said("ok: the settings\n");
        }
        print_errors(&errors);
        say_err!("{}", error_count(&errors));
        return false;
    }
    let count = match dsl::load_set(paths) {
        Ok(journeys) => journeys.len(),
        Err(e) => {
            errors.extend(e);
            0
        }
    };
    // A journey's topic is declared in its folder's settings.
    errors.extend(dsl::undeclared_topics(paths, settings::topics_of));
    // A folder's settings file is checked with its journeys, and so is a journey file's, which
    // goes by its folder's settings as the folder's journeys do (once a folder, and not again
    // for a settings file named on its own); a settings file that nothing reads is an error
    // beside a folder named, and warned of beside a journey file, as `simulate` warns of it.
    let checked = settings::check_for(paths, &settings_files);
    errors.extend(checked.errors);
    let mut advice = dsl::advice_for(paths);
    advice.extend(checked.advice);
    // What valid files say that their writers may not mean: warned of, not failed.
    for w in in_file_order(&advice) {
        say_err!("{}", warning(w));
    }
    // A folder among several that holds none (misnamed, or its journeys in a subfolder).
    let empty: Vec<PathBuf> = paths
        .iter()
        .filter(|p| p.is_dir() && dsl::journey_files(p).is_ok_and(|f| f.is_empty()))
        .cloned()
        .collect();
    if errors.is_empty() && count == 0 {
        // A CI step that checks nothing must not pass.
        say_err!("{}", no_journeys(paths));
        false
    } else if errors.is_empty() && empty.is_empty() {
        said(&format!(
            "ok: {count} journey{}\n",
            if count == 1 { "" } else { "s" }
        ))
    } else {
        print_errors(&errors);
        if !empty.is_empty() {
            say_err!("{}", no_journeys(&empty));
        }
        if !errors.is_empty() {
            say_err!("{}", error_count(&errors));
        }
        false
    }
}

/// A piece of [`dsl::advice`] as `validate` and `dev` print it.
pub fn warning(w: &dsl::FileError) -> String {
    format!("{}:{}:{}: warning: {}", w.file, w.line, w.column, w.message)
}

/// What to say of paths that hold no journey file.
fn no_journeys(paths: &[PathBuf]) -> String {
    let shown: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    format!(
        "{}: no journey files: a folder's journeys are its *.yaml, *.yml and *.json files, the extension in any case (not those of its subfolders, nor waymark.yaml, nor hidden ones like .draft.yaml)",
        shown.join(", ")
    )
}

/// The stats a simulated run's timeline adds up to, per journey, as `waymark stats` prints them
/// (the counters are the ones the deployed fold makes of the same entries).
fn stats_of_run(set: &[waymark::journey::Journey], outputs: &[simulate::Output]) -> String {
    let entries: Vec<waymark::timeline::Entry> = outputs
        .iter()
        .filter_map(|o| match o {
            simulate::Output::Timeline { entry, .. } => Some(entry.clone()),
            simulate::Output::Message(_) => None,
        })
        .collect();
    let counters = waymark::timeline::counters(&entries);
    let mut out = String::new();
    for j in set {
        let Some(c) = counters.get(&j.id) else {
            // A table of zeros would hide the one line that matters.
            out.push_str(&format!("{} v1: no one entered\n", j.id));
            continue;
        };
        out.push_str(&remote::table(&waymark::api::journey_stats(j, 1, c)));
    }
    out
}

/// Where `waymark simulate`'s unsubscribe links point: `waymark dev`'s default address.
const SIMULATED_URL: &str = "http://127.0.0.1:8080";
/// The key `waymark simulate` signs its links with (a simulation's links open nothing real).
const SIMULATED_SIGNING_KEY: &[u8] = b"waymark simulate";

fn simulate(
    journeys: &Path,
    events: &Path,
    horizon: Duration,
    expect: Option<&Path>,
    bless: bool,
    stats: bool,
) -> Result<bool> {
    // Read as a journey, a settings file's every key would be an error of a journey's.
    if let Some(message) = settings::given_as_journeys(journeys) {
        anyhow::bail!("{message}");
    }
    let set = match dsl::load_set(&[journeys.to_path_buf()]) {
        Ok(set) if set.is_empty() => {
            say_err!("{}", no_journeys(&[journeys.to_path_buf()]));
            return Err(CannotRun.into());
        }
        Ok(set) => set,
        Err(errors) => {
            print_errors(&errors);
            return Err(CannotRun.into());
        }
    };
    // What `validate` warns of, on stderr: the timeline on stdout stays as it is.
    for w in in_file_order(&dsl::advice_for(&[journeys.to_path_buf()])) {
        say_err!("{}", warning(w));
    }
    // A journey file named on its own goes by its folder's settings, as `validate` reads it.
    let settings = match settings::load(dsl::folder_of(journeys)) {
        Ok(s) => s,
        Err(errors) => {
            print_errors(&errors);
            return Err(CannotRun.into());
        }
    };
    // A settings file beside it that is not read (`validate` refuses it): its caps and
    // topics do not apply to this run.
    for w in settings::unread_in(dsl::folder_of(journeys)) {
        say_err!("{}", warning(&w));
    }
    let text = std::fs::read_to_string(events)
        .with_context(|| format!("cannot read {}", events.display()))?;
    let script = simulate::parse_script(&text).map_err(|e| {
        let shown = events.display();
        let lines: Vec<String> = e.lines().map(|l| format!("{shown}: {l}")).collect();
        anyhow::anyhow!("{}", lines.join("\n"))
    })?;
    let undeclared =
        dsl::undeclared_topics(&[journeys.to_path_buf()], |_| Some(settings.topics.clone()));
    if !undeclared.is_empty() {
        print_errors(&undeclared);
        return Err(CannotRun.into());
    }
    let config = Config {
        caps: settings.caps,
        topics: settings.topics,
        // An email's unsubscribe link is made as a deployment makes it, at `waymark dev`'s
        // address, signed with a key of the simulation's own (so a run repeats exactly).
        public_url: Some(SIMULATED_URL.into()),
        signer: Some(std::sync::Arc::new(waymark::auth::Signer::new(
            SIMULATED_SIGNING_KEY,
        ))),
        ..Config::default()
    };
    let simulate::Simulated { outputs, cut } = current_thread()?
        .block_on(simulate::run_to_horizon(
            &set,
            &script,
            config,
            horizon.to_jiff(),
        ))
        .map_err(|e| anyhow::anyhow!("simulation failed: {e}"))?;
    // On stderr: the timeline on stdout (and an `--expect` comparison) stays as it is.
    if let Some(cut) = cut {
        say_err!("{}", cut_at_horizon(&cut, horizon));
    }
    if stats {
        print_out(&stats_of_run(&set, &outputs))?;
        return Ok(true);
    }
    let mut timeline = String::new();
    for o in &outputs {
        timeline.push_str(&serde_json::to_string(o).context("encoding output")?);
        timeline.push('\n');
    }
    let Some(file) = expect else {
        print_out(&timeline)?;
        return Ok(true);
    };
    let shown = file.display();
    if bless {
        expect::bless(file, &timeline)?;
        say_err!("{shown}: wrote {} lines", outputs.len());
        return Ok(true);
    }
    let expected = expect::read(file)?;
    match expect::compare(&shown.to_string(), &expected, &timeline) {
        expect::Verdict::Same { lines } => {
            say_err!("{shown}: {lines} lines, as expected");
            Ok(true)
        }
        expect::Verdict::Differs {
            diff,
            missing,
            extra,
        } => {
            print_out(&diff)?;
            say_err!(
                "{shown}: the simulation differs ({missing} expected lines not printed, {extra} printed lines not expected); \
                 after an intended change, --bless rewrites it"
            );
            Ok(false)
        }
    }
}

/// What `waymark simulate` says when it stopped at its horizon with a wait still to end.
fn cut_at_horizon(cut: &simulate::Cut, horizon: Duration) -> String {
    format!(
        "note: the simulation stopped at its horizon, {} ({} after the last script line), with {}: what comes after the horizon is not in the timeline; pass a longer --horizon (at most 366d), or add a later line to the script",
        cut.horizon,
        horizon,
        match cut.waiting {
            0 => format!("a message still due at {}", cut.next_due),
            1 => format!("1 enrollment still waiting, until {}", cut.next_due),
            n => format!(
                "{n} enrollments still waiting, the first until {}",
                cut.next_due
            ),
        }
    )
}

fn render(file: &Path) -> Result<bool> {
    if file.is_dir() {
        anyhow::bail!("{}", folder_to_render(file));
    }
    // Read as a journey, a settings file's every key would be an error of a journey's.
    if let Some(message) = settings::given_as_journey(file, |dir, _| settings_to_render(dir)) {
        anyhow::bail!("{message}");
    }
    match dsl::load_file(file) {
        Ok(j) => {
            print_out(&render::mermaid(&j))?;
            Ok(true)
        }
        Err(errors) => {
            print_errors(&errors);
            Ok(false)
        }
    }
}

/// What to say to `waymark render <folder>`: render prints one journey, so give the command
/// that renders each of its journey files (those `validate` reads: not `waymark.yaml`), each
/// path quoted as a shell needs it.
fn folder_to_render(dir: &Path) -> String {
    let shown = dir.display();
    let head = format!("{shown} is a folder, and render prints one journey file's flowchart");
    match dsl::journey_files(dir) {
        Ok(files) if !files.is_empty() => {
            let commands: Vec<String> = files
                .iter()
                .map(|f| format!("  waymark render {}", shell_word(&f.display().to_string())))
                .collect();
            format!(
                "{head}: render one of its journey files:\n{}",
                commands.join("\n")
            )
        }
        Ok(_) => format!("{head}, and it holds no journey file (*.yaml, *.yml or *.json)"),
        Err(e) => format!("{head}, and it cannot be read: {e}"),
    }
}

/// What to render instead of a folder's settings file: one of the folder's journey files (the
/// first, and the folder, which lists them all, when it holds more).
fn settings_to_render(dir: &Path) -> String {
    match dsl::journey_files(dir) {
        Ok(files) => match files.as_slice() {
            [] => "its folder holds no journey file (*.yaml, *.yml or *.json) to render".into(),
            [one] => format!(
                "render its journey file instead, `waymark render {}`",
                shell_word(&one.display().to_string())
            ),
            [first, ..] => format!(
                "render one of its journey files instead, such as `waymark render {}` (`waymark render {}` lists all {})",
                shell_word(&first.display().to_string()),
                shell_word(&dir.display().to_string()),
                files.len()
            ),
        },
        Err(e) => format!("its folder cannot be read ({e})"),
    }
}

/// `word` as a POSIX shell reads it back whole: as it is when it holds only characters no shell
/// treats specially, else in single quotes (a `'` in it written `'\''`).
fn shell_word(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+,:@%".contains(c));
    if plain {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_words_are_quoted_only_when_a_shell_needs_it() {
        for (word, shown) in [
            ("journeys/welcome.yaml", "journeys/welcome.yaml"),
            ("my journeys/a.yml", "'my journeys/a.yml'"),
            ("it's.json", "'it'\\''s.json'"),
            ("$HOME/*.yaml", "'$HOME/*.yaml'"),
            ("", "''"),
        ] {
            assert_eq!(shell_word(word), shown, "{word}");
        }
    }

    #[test]
    fn file_errors_are_printed_in_the_files_order() {
        let e = |file: &str, line: usize, column: usize| dsl::FileError {
            file: file.into(),
            line,
            column,
            path: String::new(),
            message: String::new(),
        };
        let errors = [
            e("b.yaml", 1, 1),
            e("a.yaml", 7, 5),
            e("a.yaml", 3, 9),
            e("a.yaml", 3, 2),
        ];
        let order: Vec<(&str, usize, usize)> = in_file_order(&errors)
            .iter()
            .map(|e| (e.file.as_str(), e.line, e.column))
            .collect();
        assert_eq!(
            order,
            [
                ("a.yaml", 3, 2),
                ("a.yaml", 3, 9),
                ("a.yaml", 7, 5),
                ("b.yaml", 1, 1)
            ]
        );
    }
}
