//! `regent gen-tests`: generates `policies/tests/<package>_test.rego` from the
//! decision tables in `policies/tables/` (see `policies/README.md`).

use anyhow::{bail, Result};

use crate::cli::GenTestsArgs;

pub fn run(_args: &GenTestsArgs) -> Result<()> {
    bail!("not implemented yet")
}
