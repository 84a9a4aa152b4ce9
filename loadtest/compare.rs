//! placeholder
use crate::cli::CompareArgs;
use crate::error::Result;
pub fn run(_a: &CompareArgs) -> Result<()> {
    Ok(())
}
