"""Studies: a TOML file names models, targets, systems, benchmarks and scorers; the runner
plans the steps (train -> generate -> score -> metrics -> report) and runs what is not done."""
