//! helpline binary: parses the command line and hands over to `helpline::cli`.
fn main() -> std::process::ExitCode {
    helpline::cli::main()
}
