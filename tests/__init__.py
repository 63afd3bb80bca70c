"""vovdet test suite (a regular package, so that an installed top-level
`tests` package, such as the one model-index ships, cannot shadow it)."""
